"""Two-way sync of a local folder with a remote one (``blockdrive bisync``).

Three trees, as Dropbox's sync engine has them: the server's now, the local one now, and the
last synced tree (the merge base, kept in a SQLite state database). Entries are matched by node
id on the server and by inode (then content) locally, so renames and moves are applied as moves.

- :mod:`.state`    the state database: the last synced tree and the change feed cursor
- :mod:`.plan`     the pure three-way merge
- :mod:`.apply`    applying a plan in a safe order, recording each step
- :mod:`.ostrash`  the freedesktop.org trash, where local deletes go
- :mod:`.engine`   :class:`Bisync`: rounds of read, plan, apply
- :mod:`.watch`    ``--watch``: a round on every local (watchdog) or remote (long-poll) change
"""

from .apply import Report
from .engine import Bisync
from .plan import LocalEntry, Plan, conflict_name, plan
from .state import BaseEntry, State, default_state_path

__all__ = ["BaseEntry", "Bisync", "LocalEntry", "Plan", "Report", "State", "conflict_name", "default_state_path",
           "plan"]
