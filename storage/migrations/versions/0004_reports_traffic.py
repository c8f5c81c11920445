"""Admin reports: traffic_daily (per-day transfer counters), report_snapshots and their detail
rows (report_users, report_tiers)

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('traffic_daily',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('uploads', sa.BigInteger(), nullable=False),
    sa.Column('downloads', sa.BigInteger(), nullable=False),
    sa.Column('bytes_in', sa.BigInteger(), nullable=False),
    sa.Column('bytes_out', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'user_id', name=op.f('pk_traffic_daily'))
    )
    op.create_table('report_snapshots',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('taken_at', sa.DateTime(), nullable=False),
    sa.Column('job_run_id', sa.BigInteger(), nullable=True),
    sa.Column('headline', sa.Text(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('parquet_url', sa.String(length=1024), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_report_snapshots'))
    )
    op.create_index(op.f('ix_report_snapshots_taken_at'), 'report_snapshots', ['taken_at'], unique=False)
    op.create_table('report_users',
    sa.Column('snapshot_id', BigId, nullable=False),
    sa.Column('user_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('files', sa.BigInteger(), nullable=False),
    sa.Column('logical_bytes', sa.BigInteger(), nullable=False),
    sa.Column('trash_bytes', sa.BigInteger(), nullable=False),
    sa.Column('all_versions_bytes', sa.BigInteger(), nullable=False),
    sa.Column('used_bytes', sa.BigInteger(), nullable=False),
    sa.Column('quota_bytes', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['snapshot_id'], ['report_snapshots.id'], name=op.f('fk_report_users_snapshot_id_report_snapshots'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('snapshot_id', 'user_id', name=op.f('pk_report_users'))
    )
    op.create_table('report_tiers',
    sa.Column('snapshot_id', BigId, nullable=False),
    sa.Column('tier', sa.String(length=8), nullable=False),
    sa.Column('packs', sa.BigInteger(), nullable=False),
    sa.Column('pack_bytes', sa.BigInteger(), nullable=False),
    sa.Column('stored_bytes', sa.BigInteger(), nullable=False),
    sa.Column('retiring_packs', sa.BigInteger(), nullable=False),
    sa.Column('retiring_bytes', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['snapshot_id'], ['report_snapshots.id'], name=op.f('fk_report_tiers_snapshot_id_report_snapshots'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('snapshot_id', 'tier', name=op.f('pk_report_tiers'))
    )


def downgrade() -> None:
    op.drop_table('report_tiers')
    op.drop_table('report_users')
    op.drop_index(op.f('ix_report_snapshots_taken_at'), table_name='report_snapshots')
    op.drop_table('report_snapshots')
    op.drop_table('traffic_daily')
