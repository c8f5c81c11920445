"""The rehearsal's quick variant in CI: each tier's failover on the real engines, small."""
