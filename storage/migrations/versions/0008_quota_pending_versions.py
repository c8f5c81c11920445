"""Quota covers every kept byte: users.pending_bytes, upload_sessions.reserved_bytes,
file_versions.nblocks (backfilled), and used_bytes recomputed to count old versions

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# The default of quota.block_floor_bytes. An operator who changed it gets their figure from
# the next reconcile run, which recomputes used_bytes with the configured floor.
BLOCK_FLOOR = 4096


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pending_bytes', sa.BigInteger(), server_default='0', nullable=False))
    with op.batch_alter_table('upload_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reserved_bytes', sa.BigInteger(), server_default='0', nullable=False))
    with op.batch_alter_table('file_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('nblocks', sa.BigInteger(), nullable=True))
    op.execute("UPDATE file_versions SET nblocks = (SELECT COUNT(*) FROM version_blocks vb "
               "WHERE vb.version_id = file_versions.id)")
    # Old versions were free until now: every user's figure is recounted under the new rule
    # (a user may find themselves over quota; they can still read, delete and purge).
    op.execute(
        "UPDATE users SET used_bytes = (SELECT COALESCE(SUM(CASE WHEN v.size >= (v.nblocks - 1) * {f} "
        "THEN v.size ELSE (v.nblocks - 1) * {f} END), 0) FROM file_versions v JOIN nodes n ON n.id = v.node_id "
        "WHERE n.owner_id = users.id)".format(f=BLOCK_FLOOR))


def downgrade() -> None:
    with op.batch_alter_table('file_versions', schema=None) as batch_op:
        batch_op.drop_column('nblocks')
    with op.batch_alter_table('upload_sessions', schema=None) as batch_op:
        batch_op.drop_column('reserved_bytes')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('pending_bytes')
