"""Admin user management: users.disabled_at and users.deleted_at

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disabled_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('deleted_at', sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_users_deleted_at'), ['deleted_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_users_deleted_at', table_name='users')
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite drops an unindexed column in place; the batch way would copy and drop the
        # users table, which every other table's foreign keys refer to.
        op.execute('ALTER TABLE users DROP COLUMN deleted_at')
        op.execute('ALTER TABLE users DROP COLUMN disabled_at')
        return
    op.drop_column('users', 'deleted_at')
    op.drop_column('users', 'disabled_at')
