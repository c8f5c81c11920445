"""Servers: one heartbeat row per API server process, written by its readiness check

Revision ID: 0015
Revises: 0014
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'servers',
        sa.Column('id', sa.String(length=128), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('seen_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_servers_seen_at'), 'servers', ['seen_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_servers_seen_at'), table_name='servers')
    op.drop_table('servers')
