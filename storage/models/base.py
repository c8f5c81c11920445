from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, MetaData, types
from sqlalchemy.orm import DeclarativeBase

from .. import clock

# Stable constraint names, so migrations can refer to them on every engine.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}

# BIGINT on MySQL, but INTEGER on SQLite so that it is an auto-incrementing rowid alias.
BigId = BigInteger().with_variant(types.Integer(), "sqlite")
BlockId = types.BINARY(32)  # raw SHA-256; half the index size of hex
Timestamp = DateTime()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> dt.datetime:
    return clock.now()
