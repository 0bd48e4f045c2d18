"""The single writer of the status database: applies the event stream, then reconciles with RQ.

Events are read through a Redis consumer group and acknowledged only after the database
transaction that applied them has committed, so a mirror killed at any point re-reads what it had
not committed. Applying (rows.apply) is idempotent and ordered by attempt (events.Event.order), so
re-reading, late events from a partitioned worker, and two mirrors started by mistake all end in the
same rows. Each cycle runs under a short Redis lock: mirrors take turns instead of interleaving.

Reconciliation covers what no event reports: a work-horse killed by the OOM killer (RQ retries or
fails it, but no code of ours ran), or a job that vanished from Redis. It compares every unfinished
row with RQ's view and appends the missing change to the stream as an event marked `reconcile`,
which applies only if nothing newer has arrived.
"""

import contextlib
import logging
import socket
import time

import redis
from peewee import PeeweeException
from redis.exceptions import LockError
from rq.exceptions import NoSuchJobError

from . import events, wire
from .defaults import (
    CANCELED,
    DEFAULT_KEEPER_INTERVAL,
    DEFAULT_MIRROR_BATCH,
    DEFAULT_RECONCILE_INTERVAL,
    FAILED,
    FINAL_STATES,
    FINISHED,
    QUEUED,
    SCHEDULED,
)
from .exceptions import LogJobsError, one_line
from .keeper import Keeper
from .models import Scan, db, transaction
from .outcomes import failure_reason
from .rows import _PARTS, RECONCILE, apply
from .rqsafe import Job, statuses
from .store import Attempts, DoneFiles, MirrorPresence, ScanRecords

log = logging.getLogger(__name__)

#: Seconds a mirror's lock lasts; renewed after every step, so a dead mirror's lock frees within
#: this.
LOCK_TIMEOUT = 10
#: Fields of each rotation index looked at per reconciliation: a sweep's step.
SWEEP_BATCH = 1000
#: Seconds a mirror waits (then twice as long, up to the last) after Redis or the database failed
#: it.
BACKOFF_FIRST, BACKOFF_MOST = 1.0, 10.0
#: RQ statuses of a job whose attempt has ended, other than finished, mapped to the row's state.
_RQ_ENDED = {
    "failed": FAILED,
    "stopped": CANCELED,
    "canceled": CANCELED,
    "queued": QUEUED,
    "scheduled": SCHEDULED,
}
#: Those of a job that ended without running: failed by a worker that could not read it, or
#: canceled.
_ENDED_UNRUN = ("failed", "stopped", "canceled")


class Mirror:
    def __init__(self, conn, batch=DEFAULT_MIRROR_BATCH, keeper=None):
        self.conn, self.batch = conn, batch
        self.keeper = keeper if keeper is not None else Keeper(conn)
        self.presence = MirrorPresence(conn, LOCK_TIMEOUT)
        self.lock = self.presence.lock
        self.stream = events.Stream(conn, batch)
        self._sweeps = {}  # where forget_stale_records goes on in each index

    # -- the two ways to run ---------------------------------------------------------------------

    def once(self):
        """Bring the database fully up to date with Redis, then return how many events were
        applied."""
        if not self.lock.acquire(blocking_timeout=LOCK_TIMEOUT + 5):
            raise LogJobsError(
                f"another mirror has held {self.presence.name} for over {LOCK_TIMEOUT + 5} s"
            )
        try:
            applied = self.drain()
            self.keeper.tick()
            self.reconcile()
            return applied + self.drain()
        finally:
            with contextlib.suppress(redis.RedisError):
                self.keeper.close()
            self.lock.release()

    def run(
        self,
        stop,
        keeper_interval=DEFAULT_KEEPER_INTERVAL,
        reconcile_interval=DEFAULT_RECONCILE_INTERVAL,
    ):
        """Mirror until `stop` (a threading.Event) is set; survive Redis and database outages."""
        try:
            self._run(stop, keeper_interval, reconcile_interval)
        finally:
            with contextlib.suppress(redis.RedisError):
                self.keeper.close()

    def _run(self, stop, keeper_interval, reconcile_interval):
        next_reconcile, backoff = 0.0, BACKOFF_FIRST
        while not stop.is_set():
            try:
                # Short waits for the lock, so a stop request is seen; another mirror may hold it.
                if not self.lock.acquire(blocking_timeout=keeper_interval):
                    continue
                try:
                    next_reconcile = self._cycle(next_reconcile, reconcile_interval)
                finally:
                    self._release()
                self.presence.mark_alive(socket.gethostname())
                backoff = BACKOFF_FIRST
                self.stream.wait(keeper_interval)
            except (redis.RedisError, PeeweeException) as exc:
                log.warning(
                    "mirror: %s: %s; retrying in %.0f s",
                    type(exc).__name__,
                    one_line(str(exc)),
                    backoff,
                )
                if isinstance(exc, PeeweeException):
                    # The connection may be dead (the server restarted): the next use opens a new
                    # one.
                    with contextlib.suppress(PeeweeException):
                        db.close()
                stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MOST)

    def _cycle(self, next_reconcile, reconcile_interval):
        """Apply what is new, run the keeper, and reconcile when due; returns when it is due
        next."""
        self.drain()
        self.keeper.tick()
        if time.monotonic() < next_reconcile:
            return next_reconcile
        self.reconcile()
        self.drain()
        return time.monotonic() + reconcile_interval

    # -- applying events -------------------------------------------------------------------------

    def drain(self):
        """Apply every event in the stream; returns how many."""
        self.stream.ensure_group()
        applied = 0
        while entries := self.stream.step():
            batch = [event for entry_id, fields in entries for event in _events(entry_id, fields)]
            with transaction():
                scanned = apply(batch)
            with self.conn.pipeline(transaction=True) as pipe:
                ScanRecords.write(pipe, scanned)
                self.stream.done(pipe, [entry_id for entry_id, _ in entries])
                pipe.execute()
            applied += len(batch)
            self.lock.reacquire()  # a long backlog must not outlast the lock
        return applied

    def _release(self):
        try:
            self.lock.release()
        except LockError:
            pass  # expired already: the next cycle takes it again

    def wait_for_events(self, timeout):
        """Sleep until an entry is appended that no mirror has read yet, or `timeout` seconds
        pass."""
        self.stream.wait(timeout)

    # -- reconciling with RQ ---------------------------------------------------------------------

    def reconcile(self):
        """Append an event for every unfinished part whose job RQ knows to be elsewhere; returns
        them. Also requeues jobs lost between a worker's pop and its start, and takes a step of the
        sweeps that forget expired jobs' attempt counts and stale rotation index entries."""
        rows = (
            Scan.select(Scan.path, Scan.part_states)
            .where(Scan.status.not_in(FINAL_STATES))
            .tuples()
        )
        todo = [
            (path, i, part)
            for path, states in rows
            for i, part in enumerate(wire.decode(states, _PARTS))
            if part is not None and part.state not in FINAL_STATES
        ]
        # Small files share a job: RQ is asked once per job, not once per file.
        ids = list(dict.fromkeys(part.job_id for _, _, part in todo))
        jobs = {}
        for start in range(0, len(ids), self.batch):
            chunk = ids[start : start + self.batch]
            jobs.update(
                zip(chunk, zip(statuses(self.conn, chunk), Attempts(self.conn).get_many(chunk)))
            )
        found, queued = [], set()
        for path, i, part in todo:
            status, attempt = jobs[part.job_id]
            if status == QUEUED:
                queued.add(part.job_id)
            event = _missed(self.conn, path, i, part, status, attempt)
            if event is not None:
                found.append(event)
        if found:
            events.emit(self.conn, *found)
        self.keeper.requeue_orphans(queued)
        self.keeper.forget_expired()
        self.forget_stale_records()
        return found

    def forget_stale_records(self, batch=SWEEP_BATCH):
        """Drop the rotation index entries that no record of a finished scan holds any more (see
        store.ScanRecords.forget_stale): else the indexes would gain an entry per file ever scanned.
        """
        return ScanRecords(self.conn).forget_stale(self._sweeps, batch)


def _events(entry_id, fields):
    """The events of a stream entry; none for an entry trimmed while pending (it comes back without
    fields), or one that is not logjobs' (skipped, with a warning: it must not stop the mirror)."""
    if not fields:
        return []
    try:
        return events.read(entry_id, fields)
    except wire.Invalid as exc:
        log.warning(
            "mirror: skipping stream entry %s: not events as logjobs sends them (%s)",
            wire.text(entry_id),
            exc,
        )
        return []


def _missed(conn, path, index, part, status, attempt):
    """The event RQ's status of the part's job implies, if the part has nothing as new."""
    job_id, attempt = part.job_id, max(attempt, part.attempt)
    if status is None:
        state = FAILED
    elif status == FINISHED or status in _ENDED_UNRUN or status in _RQ_ENDED and attempt > 0:
        state = _RQ_ENDED.get(status, status)
    else:
        return None
    event = events.Event(job_id, path, state, attempt, index, worker=RECONCILE)
    if event.order <= tuple(part.order):
        return None
    # Only now are the details worth fetching: the file's own record in the job, or why the job
    # ended.
    (record,) = DoneFiles(conn).get([(job_id, path)])
    if record is not None and record.result is not None:
        event.state, event.result = FINISHED, record.result
    elif record is not None and record.error is not None:
        event.state, event.error = FAILED, record.error
    elif status is None:
        event.error = (
            "the job vanished from Redis (Redis restarted without persistence, or the job "
            "expired); push the file again"
        )
    elif state == FINISHED:
        return None  # finished without a record of this file: its events are on their way
    else:
        try:
            event.error = _rq_reason(Job.fetch(job_id, connection=conn), status)
        except NoSuchJobError:
            return None  # gone since its status was read: the next pass reports that
    return event


def _rq_reason(job, status):
    if status in ("stopped", "canceled"):
        return f"the job was {status} in RQ"
    return failure_reason(job)
