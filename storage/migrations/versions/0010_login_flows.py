"""Nextcloud Login Flow v2: flows waiting for a browser sign-in

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'login_flows',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('login_hash', sa.BINARY(length=32), nullable=False),
        sa.Column('poll_hash', sa.BINARY(length=32), nullable=False),
        sa.Column('user_agent', sa.String(length=255), nullable=False),
        sa.Column('address', sa.String(length=45), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('login_name', sa.String(length=320), nullable=True),
        sa.Column('app_password', sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_login_flows')),
        sa.UniqueConstraint('login_hash', name=op.f('uq_login_flows_login_hash')),
        sa.UniqueConstraint('poll_hash', name=op.f('uq_login_flows_poll_hash')),
    )
    with op.batch_alter_table('login_flows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_flows_address'), ['address'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_flows_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_table('login_flows')
