"""The scale-out rehearsal: blockdrive run as a cluster on one machine, with the real engines, and
nodes killed under load (``make rehearsal``; ``python -m rehearsal --help``).

Each tier has its own module that starts, kills and restarts its processes on 127.0.0.1 with their
own ports and data folders, and measures its own failover:

- ``rehearsal.procs``: starting, killing and waiting for processes and ports (shared by all).
- ``rehearsal.hdfs``: a MiniDFSCluster with 3 DataNodes and replication 3 (``MiniHdfs``), and the
  drill that stops a DataNode under uploads and reads (``hdfs_failover``).

Like ``harness`` (which it uses), this package is not part of the installed product: it drives
blockdrive from outside, through its commands, its HTTP API and the engines' own tools.
"""
