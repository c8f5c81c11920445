"""Materialised paths: how a node's ancestors are written in ``nodes.path``.

A path lists the ids of a node's ancestors, root first, each followed by "/": "/" for a
root, "/1/5/" for a node whose parent is 5 whose parent is the root 1. So

- the ancestors of a node are read from its own row, without a query;
- its depth is the number of ids in the path (a root is at depth 0);
- its descendants are the rows whose path starts with ``path + id + "/"``: one range of the
  path index, written as two comparisons (``LIKE`` uses no index on SQLite's default
  collation). Paths hold only digits and "/", and "0" is the character right after "/", so
  the strings that start with a prefix ending in "/" are exactly those at or above the prefix
  and below the prefix with its last "/" replaced by "0".
"""

from __future__ import annotations

import sqlalchemy as sa

ROOT_PATH = "/"


def ancestors(path: str) -> list[int]:
    """The ids in ``path``, root first."""
    return [int(part) for part in path.split("/") if part]


def path_of(ancestor_ids: list[int]) -> str:
    return ROOT_PATH + "".join(f"{i}/" for i in ancestor_ids)


def child_path(parent_path: str, parent_id: int) -> str:
    """The path of a node whose parent has id ``parent_id`` and path ``parent_path``."""
    return f"{parent_path}{parent_id}/"


def depth(path: str) -> int:
    return path.count("/") - 1


def under(column, prefix: str):
    """SQL: ``column`` starts with ``prefix`` (which ends in "/"), as an index range."""
    return sa.and_(column >= prefix, column < prefix[:-1] + "0")


def depth_sql(column):
    """SQL: the depth of the node whose path is ``column`` (ids = slashes - 1)."""
    return sa.func.length(column) - sa.func.length(sa.func.replace(column, "/", "")) - 1
