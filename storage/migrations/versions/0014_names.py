"""Names: nodes.live_fold (the case fold of a live name, unique in a folder) and, on
MySQL/MariaDB, node names compared code point by code point (utf8mb4_bin)

Live names that already clash under case folding are kept: the oldest of each group gets
its fold, the others none (fsck reports them), so the unique index can be built.

Revision ID: 0014
Revises: 0013
"""
import hashlib
import unicodedata

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

FoldKey = sa.String(64).with_variant(mysql.VARCHAR(64, charset='ascii', collation='ascii_bin'), 'mysql', 'mariadb')
BATCH = 1000


def fold_key(name: str) -> str:
    """storage.names.fold_key as it was when this revision was written (a migration does
    not follow later changes of the code)."""
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name in ('mysql', 'mariadb'):
        op.execute('ALTER TABLE nodes MODIFY name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, '
                   'MODIFY live_name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL')
    # A plain ADD COLUMN and CREATE INDEX: a batch (copy-and-move) on SQLite would drop the
    # search triggers that sit on the nodes table.
    op.add_column('nodes', sa.Column('live_fold', FoldKey, nullable=True))
    nodes = sa.table('nodes', sa.column('id'), sa.column('parent_id'), sa.column('live_name'), sa.column('live_fold'))
    # A folder at a time (by parent, then age), so only one folder's folds are held.
    folder, seen, after = None, set(), (0, 0)
    while True:
        rows = bind.execute(sa.select(nodes.c.id, nodes.c.parent_id, nodes.c.live_name)
                            .where(nodes.c.live_name.is_not(None),
                                   sa.or_(nodes.c.parent_id > after[0],
                                          sa.and_(nodes.c.parent_id == after[0], nodes.c.id > after[1])))
                            .order_by(nodes.c.parent_id, nodes.c.id).limit(BATCH)).all()
        if not rows:
            break
        updates = []
        for nid, pid, name in rows:
            if pid != folder:
                folder, seen = pid, set()
            key = fold_key(name)
            if key not in seen:
                seen.add(key)
                updates.append({'nid': nid, 'fold': key})
        if updates:
            bind.execute(nodes.update().where(nodes.c.id == sa.bindparam('nid'))
                         .values(live_fold=sa.bindparam('fold')), updates)
        after = (rows[-1][1], rows[-1][0])
    op.create_index('uq_nodes_parent_id_live_fold', 'nodes', ['parent_id', 'live_fold'], unique=True)


def downgrade() -> None:
    op.drop_index('uq_nodes_parent_id_live_fold', table_name='nodes')
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE nodes DROP COLUMN live_fold')
        return
    op.drop_column('nodes', 'live_fold')
    op.execute('ALTER TABLE nodes MODIFY name VARCHAR(255) NOT NULL, MODIFY live_name VARCHAR(255) NULL')
