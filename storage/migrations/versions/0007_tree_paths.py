"""Bounded trees: nodes.path (the materialised ancestor list, indexed) and users.node_count,
both backfilled from the tree as it stands

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

PATH_MAX = 3072
NodePath = sa.String(PATH_MAX).with_variant(mysql.VARCHAR(PATH_MAX, charset='ascii', collation='ascii_bin'), 'mysql', 'mariadb')
BATCH = 500


def upgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('path', NodePath, nullable=True))
        batch_op.create_index('ix_nodes_path', ['path'], unique=False)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('node_count', sa.BigInteger(), server_default='0', nullable=False))

    conn = op.get_bind()
    nodes = sa.table('nodes', sa.column('id'), sa.column('parent_id'), sa.column('path'))
    users = sa.table('users', sa.column('id'), sa.column('node_count'))
    # Level by level from the roots, so the walk holds one level in memory and recursion
    # depth never depends on how deep a tree is. A node whose parent is gone, or too deep for
    # its path to fit the column, keeps NULL (and so does everything below it): the code
    # walks such rows' parents instead, refuses to grow them, and fsck lists them.
    conn.execute(sa.update(nodes).where(nodes.c.parent_id.is_(None)).values(path='/'))
    frontier = {nid: '/' for (nid,) in conn.execute(sa.select(nodes.c.id).where(nodes.c.parent_id.is_(None)))}
    while frontier:
        parents, nxt = list(frontier), {}
        for i in range(0, len(parents), BATCH):
            rows = conn.execute(sa.select(nodes.c.id, nodes.c.parent_id)
                                .where(nodes.c.parent_id.in_(parents[i:i + BATCH]))).all()
            for nid, pid in rows:
                path = f"{frontier[pid]}{pid}/"
                if len(path) <= PATH_MAX:
                    nxt[nid] = path
        items = list(nxt.items())
        for i in range(0, len(items), BATCH):
            conn.execute(sa.update(nodes).where(nodes.c.id == sa.bindparam('nid')).values(path=sa.bindparam('p')),
                         [{'nid': nid, 'p': p} for nid, p in items[i:i + BATCH]])
        frontier = nxt
    owned = sa.table('nodes', sa.column('owner_id'), sa.column('parent_id')).alias('n')
    counted = (sa.select(sa.func.count()).select_from(owned)
               .where(owned.c.owner_id == users.c.id, owned.c.parent_id.is_not(None)).scalar_subquery())
    conn.execute(sa.update(users).values(node_count=counted))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('node_count')
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_index('ix_nodes_path')
        batch_op.drop_column('path')
