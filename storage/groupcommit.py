"""Group commit of metadata: the concurrent commits of one process share one transaction.

A small upload's commit is a handful of statements and one commit, and on SQLite every commit
is its own fsync of the write-ahead log under the database's one write lock. Sixteen requests
committing at once then queue for that lock one by one, each connection of the process polling
for it (SQLite's busy handler sleeps between tries), and each pays its own fsync.

:class:`GroupCommitter` lets them share. A request hands its transaction function to
:meth:`GroupCommitter.run` and waits. If no group is committing, it leads: it takes every
function waiting (its own first, up to ``max_group``), runs each in a SAVEPOINT of one
transaction, commits once, and answers every waiter with its own result or error. Requests
that arrive while a group commits wait for the next group, led by one of them; nobody waits
on purpose for company, so an idle server's latency is unchanged.

What keeps it as safe as a transaction per request:

- *One request's error is its own.* A function that raises rolls back its savepoint only;
  the others commit. Its caller gets its exception, as it would have.
- *Fresh reads.* The session's identity map is expired before each function, so none reads
  an object an earlier one loaded and then changed by a statement the ORM did not see.
- *Races are retried alone.* A function that loses a race (a unique-key clash) is run again
  after the group, in a transaction of its own with :func:`storage.db.run_tx`'s retries. If
  the group's transaction itself fails (a deadlock victim on MySQL, a failed commit), nothing
  of it stands and every function runs again alone: a function is a transaction body, so it
  may run more than once, as with ``run_tx``.
- *One lock order.* Functions run sorted by their ``key`` (for a put: the owner, then the
  folder), so two groups of different processes take the owners' locks in the same order.
- *Answered after the commit.* A waiter gets its result only once the group's commit returned.
  The crash points ``group:before_commit`` (every function of the group ran; nothing is
  committed) and ``group:after_commit`` (committed; nobody answered) are in the crash matrix.

A function may also say how it runs in bulk with others of its kind (:class:`Batch`: a small
upload's commit does). The group then first runs every such function of one kind together, in
one savepoint, through one call of the batch's function: its statements are a few per group
rather than a few per upload. That call is a bet that none of them fails: if it raises for any
reason other than a lost transaction, its savepoint rolls back and each function runs on its own
as above, so every caller still gets its own result or error.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Generic, NamedTuple, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from . import crashpoints
from .db import run_tx

T = TypeVar("T")
log = logging.getLogger(__name__)

_PENDING, _DONE, _ALONE = "pending", "done", "alone"


class Batch(NamedTuple):
    """How a function runs together with others of its kind: ``run(session, items)`` does the
    work of the functions whose ``item`` each is, in the order given, and returns their results
    in that order; it raises when any of them would fail (each then runs on its own). The
    functions of one kind are those whose ``run`` is the same."""

    run: Callable[[Session, list], list]
    item: Any


class _Waiter(Generic[T]):
    __slots__ = ("fn", "key", "attempts", "batch", "state", "result", "error")

    def __init__(self, fn: Callable[[Session], T], key: tuple, attempts: int, batch: Batch | None = None):
        self.fn, self.key, self.attempts, self.batch = fn, key, attempts, batch
        self.state = _PENDING
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommitter:
    """Runs transaction functions of one process's threads in shared transactions (module doc).

    ``stats`` counts ``groups`` committed, ``commits`` (functions committed in a group),
    ``alone`` (functions run in a transaction of their own after a race or a failed group),
    the ``largest`` group, ``batched`` (functions run in bulk with others of their kind) and
    ``unbatched`` (functions run on their own after their bulk run raised). ``listeners`` are called with ``("group", n)`` for every
    transaction committed for ``n`` functions (1 for one that committed alone) and
    ``("rerun", 1)`` for every function run again alone after its group."""

    def __init__(self, sm: sessionmaker[Session], max_group: int = 64):
        self.sm = sm
        self.max_group = max(max_group, 1)
        self._cond = threading.Condition()
        self._queue: list[_Waiter[Any]] = []
        self._leading = False
        self.stats = {"groups": 0, "commits": 0, "alone": 0, "largest": 0, "batched": 0, "unbatched": 0}
        self.listeners: list[Callable[[str, int], None]] = []

    @property
    def waiting(self) -> int:
        """Functions handed over and waiting for a group to take them."""
        with self._cond:
            return len(self._queue)

    def run(self, fn: Callable[[Session], T], key: tuple = (), attempts: int = 4,
            batch: Batch | None = None) -> T:
        """Run ``fn(session)`` in a transaction, shared with the functions other threads hand
        over at the same time; return its result or raise its error once that transaction has
        committed. ``fn`` may run more than once (see the module doc), like ``run_tx``'s.
        With ``batch``, ``fn`` may instead run in bulk with the others of its kind."""
        me: _Waiter[T] = _Waiter(fn, key, attempts, batch)
        with self._cond:
            self._queue.append(me)
            while self._leading and me.state != _DONE:
                self._cond.wait()
            if me.state == _DONE:
                return me.outcome()
            self._leading = True
            self._queue.remove(me)
            group = [me] + self._queue[:self.max_group - 1]
            del self._queue[:self.max_group - 1]
        finished = False
        try:
            self._commit(group)
            finished = True
        finally:
            with self._cond:
                for w in group:  # answered only now, all at once, under the lock
                    if not finished:  # an error escaped _commit: nothing of the group stands
                        w.result, w.error = None, RuntimeError("the group commit failed")
                    w.state = _DONE
                self._leading = False
                self._cond.notify_all()
        return me.outcome()

    def _commit(self, group: list[_Waiter[Any]]) -> None:
        group.sort(key=lambda w: w.key)
        if len(group) == 1:
            self._alone(group[0])
            return
        try:
            with self.sm() as s, s.begin():
                bulk = self._batches(s, group)
                for w in group:
                    if id(w) in bulk:
                        continue
                    s.expire_all()
                    try:
                        with s.begin_nested():
                            w.result = w.fn(s)
                    except IntegrityError:
                        w.state = _ALONE  # lost a race: again on its own, after the group
                    except DBAPIError:
                        raise  # the transaction may be gone (a deadlock victim): nothing stands
                    except Exception as exc:  # noqa: BLE001 - the request's own error, for its caller
                        w.error = exc
                crashpoints.reach("group:before_commit")
        except Exception as exc:  # noqa: BLE001 - rolled back whole: every function runs again alone
            log.warning("a group of %d commits did not commit (%s: %s); each runs again alone",
                        len(group), type(exc).__name__, exc)
            for w in group:
                w.state, w.result, w.error = _ALONE, None, None
        else:
            crashpoints.reach("group:after_commit")
            self.stats["groups"] += 1
            self.stats["commits"] += sum(1 for w in group if w.state == _PENDING and w.error is None)
            self.stats["largest"] = max(self.stats["largest"], len(group))
            self._tell("group", len(group))
        for w in group:
            if w.state == _ALONE:
                self.stats["alone"] += 1
                self._tell("rerun", 1)
                self._alone(w)

    def _batches(self, s: Session, group: list[_Waiter[Any]]) -> set[int]:
        """Run the functions of ``group`` that have a :class:`Batch`, each kind of two or more in
        one savepoint; the ids of the waiters so answered. A kind whose bulk run raised is left
        to run function by function; a lost transaction is raised (the group fails)."""
        kinds: dict[Callable, list[_Waiter[Any]]] = {}
        for w in group:
            if w.batch is not None:
                kinds.setdefault(w.batch.run, []).append(w)
        done: set[int] = set()
        for run, ws in kinds.items():
            if len(ws) < 2:
                continue
            s.expire_all()
            try:
                with s.begin_nested():
                    results = run(s, [w.batch.item for w in ws])
            except IntegrityError:
                pass
            except DBAPIError:
                raise  # the transaction may be gone (a deadlock victim): nothing stands
            except Exception as exc:  # noqa: BLE001 - one of them fails: each runs on its own
                log.debug("a batch of %d did not run in bulk (%s: %s)", len(ws), type(exc).__name__, exc)
            else:
                for w, r in zip(ws, results, strict=True):
                    w.result = r
                    done.add(id(w))
                self.stats["batched"] += len(ws)
                continue
            self.stats["unbatched"] += len(ws)
        return done

    def _tell(self, what: str, n: int) -> None:
        for fn in self.listeners:
            fn(what, n)

    def _alone(self, w: _Waiter[Any]) -> None:
        def body(s: Session):
            result = w.fn(s)
            crashpoints.reach("group:before_commit")
            return result
        try:
            w.result = run_tx(self.sm, body, w.attempts)
        except Exception as exc:  # noqa: BLE001 - the request's own error, for its caller
            w.error = exc
        else:
            crashpoints.reach("group:after_commit")
            self._tell("group", 1)
