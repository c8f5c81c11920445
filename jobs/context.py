"""What every job gets: the drive (metadata + block store), Spark, the config, and how to read
metadata into DataFrames.

Metadata extraction has two paths, chosen by config:

- SQLAlchemy -> Arrow -> ``spark.createDataFrame`` (the embedded SQLite default, and MySQL
  unless ``jobs.jdbc``): rows are fetched in batches into Arrow arrays on the driver;
- Spark's JDBC reader (MySQL with ``jobs.jdbc = true``): the executors read the table in
  ``jobs.jdbc_partitions`` partitions by id range, which is what a cluster should do with
  billions of rows. It needs the MariaDB JDBC driver (``jobs.jdbc_packages``, fetched from
  Maven Central at session start).

What a job reads is a select from :mod:`storage.extracts`, never SQL text: the first path runs
it through the engine, the second compiles it with the engine's dialect (:func:`storage.extracts.to_sql`).
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import pyarrow as pa
import sqlalchemy as sa

from storage import extracts
from storage.clock import now
from storage.maintenance import SAFE, Safety

FETCH = 100_000

_ARROW = {"binary": pa.binary(), "bigint": pa.int64(), "int": pa.int64(), "string": pa.string(),
          "timestamp_ntz": pa.timestamp("us"), "double": pa.float64(), "boolean": pa.bool_()}


def parse_schema(ddl: str) -> list[tuple[str, str]]:
    return [tuple(part.split()) for part in (p.strip() for p in ddl.split(",")) if part]


def arrow_table(conn, select: sa.Select, ddl: str) -> pa.Table:
    """Run ``select`` and collect its rows as an Arrow table of schema ``ddl`` ("name type, ...")."""
    cols = parse_schema(ddl)
    schema = pa.schema([(n, _ARROW[t]) for n, t in cols])
    batches = []
    result = conn.execute(select)
    while True:
        rows = result.fetchmany(FETCH)
        if not rows:
            break
        columns = list(zip(*rows))
        arrays = []
        for (name, typ), values in zip(cols, columns):
            if typ == "binary":
                values = [bytes(v) if v is not None else None for v in values]
            elif typ == "timestamp_ntz":
                values = [v if v is None or isinstance(v, dt.datetime) else dt.datetime.fromisoformat(str(v))
                          for v in values]
            arrays.append(pa.array(values, type=schema.field(name).type))
        batches.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
    return pa.Table.from_batches(batches, schema=schema)


@dataclass
class Context:
    drive: object  # storage.drive.Drive
    spark: object
    cfg: dict
    dry_run: bool = False
    safety: Safety = SAFE
    progress: Callable[[str], None] = lambda msg: None
    options: dict = field(default_factory=dict)  # per-run options (rebuild_index's target, ...)
    started: dt.datetime = field(default_factory=now)

    @property
    def sm(self):
        return self.drive.sm

    @property
    def engine(self):
        return self.drive.engine

    @property
    def grace(self) -> int:
        return self.cfg["gc"]["grace_seconds"]

    def frame(self, select: sa.Select, ddl: str, table: str | None = None,
              partition_column: str | None = None):
        """A DataFrame of ``select``'s rows (a :mod:`storage.extracts` select) with schema ``ddl``.
        With JDBC on MySQL and a ``table`` named, the executors read it partitioned by
        ``partition_column``."""
        if self.cfg["jobs"]["jdbc"] and self.engine.dialect.name == "mysql" and table:
            return self._jdbc(extracts.to_sql(select, self.engine.dialect), ddl, table, partition_column)
        with self.engine.connect() as conn:
            t = arrow_table(conn, select, ddl)
        return self.spark.createDataFrame(t)

    def _jdbc(self, sql: str, ddl: str, table: str, partition_column: str | None):
        url = self.engine.url
        # jdbc:mysql (with the MariaDB driver's permitMysqlScheme) so that Spark picks its MySQL
        # dialect and quotes identifiers with backticks, not double quotes.
        jdbc_url = f"jdbc:mysql://{url.host}:{url.port or 3306}/{url.database}?permitMysqlScheme"
        props = {"user": url.username or "", "password": url.password or "",
                 "driver": "org.mariadb.jdbc.Driver"}
        query = f"({sql}) AS q"
        n = self.cfg["jobs"]["jdbc_partitions"]
        if partition_column:
            with self.engine.connect() as conn:
                lo, hi = conn.execute(extracts.partition_bounds(table, partition_column)).one()
            if lo is not None:
                df = self.spark.read.jdbc(jdbc_url, query, column=partition_column, lowerBound=int(lo),
                                          upperBound=int(hi) + 1, numPartitions=n, properties=props)
                return _cast(df, ddl)
        # Binary keys (block ids): split by the first byte of the select's first binary column
        # (``id`` of blocks, ``block_id`` of a select of refs) instead.
        key = partition_column or next((n for n, t in parse_schema(ddl) if t == "binary"), "id")
        bounds = [round(i * 256 / n) for i in range(n + 1)]
        preds = [f"{key} >= X'{lo:02x}'" + (f" AND {key} < X'{hi:02x}'" if hi < 256 else "")
                 for lo, hi in zip(bounds, bounds[1:])]
        preds[0] = f"{key} < X'{bounds[1]:02x}'" if n > 1 else "1=1"
        df = self.spark.read.jdbc(jdbc_url, query, properties=props, predicates=preds)
        return _cast(df, ddl)

    def say(self, msg: str) -> None:
        self.progress(msg)


def _cast(df, ddl: str):
    from pyspark.sql import functions as F
    return df.select([F.col(n).cast(t).alias(n) for n, t in parse_schema(ddl)])


def stderr_progress(job: str) -> Callable[[str], None]:
    def say(msg: str) -> None:
        print(f"[{job}] {msg}", file=sys.stderr, flush=True)
    return say


def scheme(url: str) -> str:
    return urlsplit(url).scheme or "file"
