"""The change journal: changes (one row per change, per user journal) and change_horizons
(how far each journal has been pruned)

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

PATH_MAX = 3072
NodePath = sa.String(PATH_MAX).with_variant(mysql.VARCHAR(PATH_MAX, charset='ascii', collation='ascii_bin'), 'mysql', 'mariadb')
BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'changes',
        sa.Column('seq', BigId, autoincrement=True, nullable=False),
        sa.Column('user_id', sa.BigInteger(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('node_id', sa.BigInteger(), nullable=False),
        sa.Column('node_kind', sa.String(length=8), nullable=False),
        sa.Column('owner_id', sa.BigInteger(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('parent_id', sa.BigInteger(), nullable=True),
        sa.Column('path', NodePath, nullable=True),
        sa.Column('version_id', sa.BigInteger(), nullable=True),
        sa.Column('size', sa.BigInteger(), nullable=True),
        sa.Column('sha256', sa.BINARY(length=32), nullable=True),
        sa.Column('mtime', sa.DateTime(), nullable=True),
        sa.Column('old_parent_id', sa.BigInteger(), nullable=True),
        sa.Column('old_name', sa.String(length=255), nullable=True),
        sa.Column('old_path', NodePath, nullable=True),
        sa.Column('role', sa.String(length=8), nullable=True),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('seq', name=op.f('pk_changes')),
    )
    op.create_index('ix_changes_user_seq', 'changes', ['user_id', 'seq'], unique=False)
    op.create_index('ix_changes_user_node', 'changes', ['user_id', 'node_id'], unique=False)
    op.create_index(op.f('ix_changes_at'), 'changes', ['at'], unique=False)
    op.create_table(
        'change_horizons',
        sa.Column('user_id', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('user_id', name=op.f('pk_change_horizons')),
    )


def downgrade() -> None:
    op.drop_table('change_horizons')
    op.drop_index(op.f('ix_changes_at'), table_name='changes')
    op.drop_index('ix_changes_user_node', table_name='changes')
    op.drop_index('ix_changes_user_seq', table_name='changes')
    op.drop_table('changes')
