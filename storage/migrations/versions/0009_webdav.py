"""WebDAV: dead properties and locks in the database, nodes.changes (a folder's etag moves
when anything below it changes) and file_versions.mtime (the client's modification time)

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

PATH_MAX = 3072
NodePath = sa.String(PATH_MAX).with_variant(mysql.VARCHAR(PATH_MAX, charset='ascii', collation='ascii_bin'), 'mysql', 'mariadb')


def upgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('changes', sa.BigInteger(), server_default='0', nullable=False))
    with op.batch_alter_table('file_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mtime', sa.DateTime(), nullable=True))
    op.create_table(
        'dav_props',
        sa.Column('node_id', sa.BigInteger(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], name=op.f('fk_dav_props_node_id_nodes'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('node_id', 'name', name=op.f('pk_dav_props')),
    )
    op.create_table(
        'dav_locks',
        sa.Column('token', sa.String(length=100), nullable=False),
        sa.Column('root', NodePath, nullable=False),
        sa.Column('user_id', sa.BigInteger(), nullable=True),
        sa.Column('principal', sa.String(length=255), nullable=False),
        sa.Column('scope', sa.String(length=10), nullable=False),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('depth', sa.String(length=10), nullable=False),
        sa.Column('timeout', sa.BigInteger(), nullable=False),
        sa.Column('owner', sa.Text(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('token', name=op.f('pk_dav_locks')),
    )
    with op.batch_alter_table('dav_locks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dav_locks_root'), ['root'], unique=False)
        batch_op.create_index(batch_op.f('ix_dav_locks_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_table('dav_locks')
    op.drop_table('dav_props')
    with op.batch_alter_table('file_versions', schema=None) as batch_op:
        batch_op.drop_column('mtime')
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('changes')
