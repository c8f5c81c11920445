"""The scale-out rehearsal: blockdrive run as a cluster on one machine, with the real engines, and
nodes killed under load (``make rehearsal``; ``python -m rehearsal --help``).

Each tier has its own module that starts, kills and restarts its processes on 127.0.0.1 with their
own ports and data folders, and measures its own failover:

- ``rehearsal.procs``: starting, killing and waiting for processes and ports (shared by all).
- ``rehearsal.api``: API servers behind HAProxy (``docker/haproxy.cfg``); one killed under load.
- ``rehearsal.load``: the client load (uploads, tus, downloads, listings, long-polls) with a
  ledger of every acknowledged upload, and its read-back.
- ``rehearsal.hdfs``: MiniDFSCluster with three DataNodes; one stopped during uploads and reads.
- ``rehearsal.mariadb``: a MariaDB primary and replica (GTID replication) and the drill that kills
  the replica while listings read from it.
- ``rehearsal.spark``: Spark standalone, a master and two workers; a worker killed mid-job.
- ``rehearsal.schedulers``: two schedulers on one database; the leader killed mid-job.
- ``rehearsal.cluster``: every tier at once, one load, the kills in turn (``make rehearsal``).

Like ``harness`` (which it uses), this package is not part of the installed product: it drives
blockdrive from outside, through its commands, its HTTP API and the engines' own tools.
"""
