"""The migrations build exactly the schema the models describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storage.db import head_revision, make_engine, migrate
from storage.models import Base
from storage.search import INDEX_TABLES


def models_only(name, type_, _parent):
    """The search index (and FTS5's own tables behind it) is no model: triggers keep it."""
    return not (type_ == "table" and name.startswith(INDEX_TABLES))


def test_migrations_match_the_models(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    assert migrate(engine) == head_revision()
    with engine.connect() as conn:
        # SQLite reflects BINARY as NUMERIC, so types are compared on MySQL only.
        ctx = MigrationContext.configure(conn, opts={"compare_type": conn.dialect.name != "sqlite",
                                                   "include_name": models_only})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_the_comparison_sees_a_missing_table(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE rate_limits")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False, "include_name": models_only}), Base.metadata)
    assert [d[0] for d in diff] == ["add_table"] and diff[0][1].name == "rate_limits"
