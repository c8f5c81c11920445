"""Search by name: an index over live node names kept in step by triggers on ``nodes``
(SQLite: an FTS5 table; MySQL/MariaDB: an InnoDB FULLTEXT table), backfilled from the tree

What each engine indexes, and why, is in :mod:`storage.search`. Triggers, not code, keep the
index in step: every door that creates, renames, moves, trashes, restores or purges a node
writes ``nodes``, and none of them has to remember the index.

Revision ID: 0011
Revises: 0010
"""
from alembic import op
from sqlalchemy.exc import OperationalError

from storage.errors import ConfigError


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

# SQLite. Contentless (content=''): the index holds no copy of the names; a row leaves it
# through FTS5's 'delete' command given exactly the values it was added with, which the
# triggers have in OLD. Indexed exactly while live_name IS NOT NULL (live, not a root).
# ``anc`` holds the ids of the node's ancestors and its own id, so a query can be narrowed to
# subtrees inside the index (storage.search).
SQLITE_ANC = "coalesce({row}.path, '') || {row}.id"
SQLITE_ADD = ("INSERT INTO node_fts(rowid, name, anc) SELECT NEW.id, NEW.live_name, "
              + SQLITE_ANC.format(row="NEW") + " WHERE NEW.live_name IS NOT NULL;")
SQLITE_DROP = ("INSERT INTO node_fts(node_fts, rowid, name, anc) SELECT 'delete', OLD.id, OLD.live_name, "
               + SQLITE_ANC.format(row="OLD") + " WHERE OLD.live_name IS NOT NULL;")
SQLITE = [
    "CREATE VIRTUAL TABLE node_fts USING fts5(name, anc, content='', "
    "tokenize=\"unicode61 remove_diacritics 2\")",
    f"CREATE TRIGGER node_fts_insert AFTER INSERT ON nodes BEGIN {SQLITE_ADD} END",
    f"CREATE TRIGGER node_fts_update AFTER UPDATE OF live_name, path ON nodes BEGIN {SQLITE_DROP} {SQLITE_ADD} END",
    f"CREATE TRIGGER node_fts_delete AFTER DELETE ON nodes BEGIN {SQLITE_DROP} END",
    "INSERT INTO node_fts(rowid, name, anc) SELECT id, live_name, coalesce(path, '') || id FROM nodes "
    "WHERE live_name IS NOT NULL",
]

# MySQL/MariaDB. InnoDB's tokeniser keeps "_" inside words, drops words shorter than
# innodb_ft_min_token_size (3) and stop words ("the", "on", ...), and MariaDB has no ngram
# parser. So the indexed text is made here: every run of letters and digits becomes a
# word of its own, lower-cased and marked with the prefix "zz" ("report-2024_final.pdf" ->
# "zzreport zz2024 zzfinal zzpdf "), which no stop word matches and no word is too short for.
# Then come the ids of the node's ancestors and its own, as "zy_1 zy_5 zy_9": a name cannot
# make such a word (its words never hold "_"), and a query narrows to subtrees with them.
MYSQL_WORDS = ("CONCAT(LOWER(REGEXP_REPLACE({row}.live_name, "
               "'[^\\\\p{{L}}\\\\p{{N}}]*([\\\\p{{L}}\\\\p{{N}}]+)[^\\\\p{{L}}\\\\p{{N}}]*', 'zz\\\\1 ')), "
               "REGEXP_REPLACE(CONCAT(COALESCE({row}.path, ''), {row}.id), '([0-9]+)', 'zy_\\\\1 '))")
MYSQL_ADD = ("INSERT INTO node_words (node_id, words) VALUES (NEW.id, "
             + MYSQL_WORDS.format(row="NEW") + ")")
MYSQL = [
    "CREATE TABLE IF NOT EXISTS node_words (node_id BIGINT NOT NULL PRIMARY KEY, words TEXT NOT NULL, "
    "FULLTEXT KEY ft_node_words_words (words)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    f"CREATE TRIGGER node_words_insert AFTER INSERT ON nodes FOR EACH ROW "
    f"BEGIN IF NEW.live_name IS NOT NULL THEN {MYSQL_ADD}; END IF; END",
    f"CREATE TRIGGER node_words_update AFTER UPDATE ON nodes FOR EACH ROW BEGIN "
    f"IF NOT (OLD.live_name <=> NEW.live_name AND OLD.path <=> NEW.path) THEN "
    f"DELETE FROM node_words WHERE node_id = OLD.id; "
    f"IF NEW.live_name IS NOT NULL THEN {MYSQL_ADD}; END IF; END IF; END",
    "CREATE TRIGGER node_words_delete AFTER DELETE ON nodes FOR EACH ROW "
    "DELETE FROM node_words WHERE node_id = OLD.id",
    "INSERT INTO node_words (node_id, words) SELECT id, " + MYSQL_WORDS.format(row="nodes")
    + " FROM nodes WHERE live_name IS NOT NULL",
]


NEED_SUPER = 1419  # creating a trigger with binary logging on, without SUPER


def upgrade() -> None:
    conn = op.get_bind()
    try:
        for statement in SQLITE if conn.dialect.name == 'sqlite' else MYSQL:
            conn.exec_driver_sql(statement)
    except OperationalError as exc:
        if exc.orig.args[0] != NEED_SUPER:
            raise
        raise ConfigError("the search index needs triggers, and with binary logging on MySQL/MariaDB lets only "
                          "SUPER create them: start the server with log_bin_trust_function_creators=ON (safe "
                          "with binlog_format=ROW) or give the blockdrive user SUPER, then run "
                          "`blockdrive init` again") from None


def downgrade() -> None:
    conn = op.get_bind()
    prefix = 'node_fts' if conn.dialect.name == 'sqlite' else 'node_words'
    for event in ('insert', 'update', 'delete'):
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {prefix}_{event}")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {prefix}")
