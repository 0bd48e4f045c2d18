"""The single writer of the status database: applies the event stream, then reconciles with RQ.

Events are read through a Redis consumer group and acknowledged only after the database
transaction that applied them has committed, so a mirror killed at any point re-reads what it had
not committed. Applying is idempotent and ordered by attempt (events.Event.order), so re-reading,
late events from a partitioned worker, and two mirrors started by mistake all end in the same rows.
Each cycle runs under a short Redis lock: mirrors take turns instead of interleaving.

Reconciliation covers what no event reports: a work-horse killed by the OOM killer (RQ retries or
fails it, but no code of ours ran), or a job that vanished from Redis. It compares every unfinished
row with RQ's view and appends the missing change to the stream as an event marked `reconcile`,
which applies only if nothing newer has arrived.
"""

import json
import logging
import time

import redis
from redis.exceptions import LockError
from peewee import PeeweeException
from rq.exceptions import NoSuchJobError
from rq.job import Job

from . import events
from .defaults import (
    ATTEMPTS_KEY, DEFAULT_KEEPER_INTERVAL, DEFAULT_MIRROR_BATCH, DEFAULT_RECONCILE_INTERVAL, EVENTS_GROUP,
    EVENTS_KEY, FAILED, FINAL_STATES, FINISHED, MIRROR_LOCK_KEY, QUEUED, SCHEDULED, STARTED,
)
from .exceptions import LogJobsError
from .keeper import Keeper
from .models import History, Scan, db, utc
from .queues import failure_reason, statuses

log = logging.getLogger(__name__)

CONSUMER = "mirror"   # one name for every mirror: the lock holder re-reads whatever a dead one left
LOCK_TIMEOUT = 10     # s; renewed after every batch, so a dead mirror's lock frees within this
RECONCILE = "reconcile"  # worker name marking an event the reconciler synthesised
#: RQ statuses of a job whose attempt has ended, other than finished, mapped to the row's state.
_RQ_ENDED = {"failed": FAILED, "stopped": FAILED, "canceled": FAILED, "queued": QUEUED, "scheduled": SCHEDULED}


class Mirror:
    def __init__(self, conn, batch=DEFAULT_MIRROR_BATCH, keeper=None):
        self.conn, self.batch = conn, batch
        self.keeper = keeper if keeper is not None else Keeper(conn)
        self.lock = conn.lock(MIRROR_LOCK_KEY, timeout=LOCK_TIMEOUT)

    # -- the two ways to run ---------------------------------------------------------------------

    def once(self):
        """Bring the database fully up to date with Redis, then return how many events were applied."""
        if not self.lock.acquire(blocking_timeout=LOCK_TIMEOUT + 5):
            raise LogJobsError(f"another mirror has held {MIRROR_LOCK_KEY} for over {LOCK_TIMEOUT + 5} s")
        try:
            applied = self.drain()
            self.keeper.tick()
            self.reconcile()
            return applied + self.drain()
        finally:
            self.lock.release()

    def run(self, stop, keeper_interval=DEFAULT_KEEPER_INTERVAL, reconcile_interval=DEFAULT_RECONCILE_INTERVAL):
        """Mirror until `stop` (a threading.Event) is set; survive Redis and database outages."""
        next_reconcile, backoff = 0.0, 1.0
        while not stop.is_set():
            try:
                # Short waits for the lock, so a stop request is seen; another mirror may hold it.
                if not self.lock.acquire(blocking_timeout=keeper_interval):
                    continue
                try:
                    self.drain()
                    self.keeper.tick()
                    if time.monotonic() >= next_reconcile:
                        self.reconcile()
                        self.drain()
                        next_reconcile = time.monotonic() + reconcile_interval
                finally:
                    self._release()
                backoff = 1.0
                self.wait_for_events(keeper_interval)
            except (redis.RedisError, PeeweeException) as exc:
                log.warning("mirror: %s: %s; retrying in %.0f s", type(exc).__name__, exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        self.keeper.close()

    # -- applying events -------------------------------------------------------------------------

    def drain(self):
        """Apply every event in the stream; returns how many."""
        self._ensure_group()
        applied = 0
        while True:
            # Entries delivered before but never acknowledged (a mirror died mid-batch) come first.
            entries = self._read("0") or self._read(">")
            if not entries:
                return applied
            batch = [events.Event.from_fields(stream_id, fields) for stream_id, fields in entries]
            with db.atomic():
                apply(batch)
            ids = [e.stream_id for e in batch]
            with self.conn.pipeline(transaction=True) as pipe:
                pipe.xack(EVENTS_KEY, EVENTS_GROUP, *ids)
                pipe.xtrim(EVENTS_KEY, minid=ids[-1])
                pipe.execute()
            applied += len(batch)
            self.lock.reacquire()  # a long backlog must not outlast the lock

    def _release(self):
        try:
            self.lock.release()
        except LockError:
            pass  # expired already: the next cycle takes it again

    def _read(self, start):
        reply = self.conn.xreadgroup(EVENTS_GROUP, CONSUMER, {EVENTS_KEY: start}, count=self.batch)
        return [(i, f) for _, entries in reply for i, f in entries if f] if reply else []

    def _ensure_group(self):
        try:
            self.conn.xgroup_create(EVENTS_KEY, EVENTS_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def wait_for_events(self, timeout):
        """Sleep until an event is appended after the last one applied, or `timeout` seconds pass."""
        self.conn.xread({EVENTS_KEY: "$"}, block=int(timeout * 1000), count=1)

    def lag(self):
        """Events appended but not yet applied."""
        groups = self.conn.xinfo_groups(EVENTS_KEY) if self.conn.exists(EVENTS_KEY) else []
        group = next((g for g in groups if g["name"] in (EVENTS_GROUP, EVENTS_GROUP.encode())), None)
        if group is None:
            return self.conn.xlen(EVENTS_KEY)
        return (group.get("lag") or 0) + group["pending"]

    # -- reconciling with RQ ---------------------------------------------------------------------

    def reconcile(self):
        """Append an event for every unfinished row whose job RQ knows to be elsewhere; returns them."""
        rows = list(Scan.select(Scan.job_id, Scan.attempts, Scan.order_attempt, Scan.order_phase)
                    .where(Scan.status.not_in(FINAL_STATES)))
        found = []
        for start in range(0, len(rows), self.batch):
            chunk = rows[start:start + self.batch]
            ids = [row.job_id for row in chunk]
            attempts = self.conn.hmget(ATTEMPTS_KEY, ids)
            for row, status, attempt in zip(chunk, statuses(self.conn, ids), attempts):
                event = _missed(self.conn, row, status, int(attempt or 0))
                if event is not None:
                    found.append(event)
        if found:
            with self.conn.pipeline(transaction=False) as pipe:
                for event in found:
                    events.emit(pipe, event)
                pipe.execute()
        return found


def _missed(conn, row, status, attempt):
    """The event RQ's status of the row's job implies, if the row has nothing as new."""
    attempt = max(attempt, row.attempts)
    if status is None:
        event = events.Event(row.job_id, FAILED, attempt, worker=RECONCILE,
                             error="the job vanished from Redis (Redis restarted without persistence, "
                                   "or the job expired); push the file again")
    elif status == FINISHED:
        event = events.Event(row.job_id, FINISHED, attempt, worker=RECONCILE)
    elif status in _RQ_ENDED and attempt > 0:
        event = events.Event(row.job_id, _RQ_ENDED[status], attempt, worker=RECONCILE)
    else:
        return None
    if event.order <= (row.order_attempt, row.order_phase):
        return None
    # Only now is the whole job worth fetching: for its result, or the reason it ended.
    try:
        job = Job.fetch(row.job_id, connection=conn) if status is not None else None
    except NoSuchJobError:
        return None  # gone since its status was read: the next pass reports that
    if job is not None and status == FINISHED:
        event.result = job.return_value()
    elif job is not None:
        event.error = _rq_reason(job, status)
    return event


def _rq_reason(job, status):
    if status in ("stopped", "canceled"):
        return f"the job was {status} in RQ"
    return failure_reason(job)


def apply(batch):
    """Apply events to the rows they concern; call inside a transaction."""
    paths = {e.path for e in batch if e.path}
    job_ids = {e.job_id for e in batch}
    by_path = {row.path: row for row in Scan.select().where(Scan.path.in_(paths) | Scan.job_id.in_(job_ids))}
    by_job = {row.job_id: row for row in by_path.values()}
    changed, history = {}, []
    for event in batch:
        if event.path is not None:                  # a push: the file's row now follows this job
            row = by_path.get(event.path) or Scan(path=event.path)
            by_job.pop(row.job_id, None)
            _reset(row, event)
            by_path[event.path] = by_job[event.job_id] = row
        else:
            row = by_job.get(event.job_id)
            if row is None or not _newer(event, row):
                continue                              # stale: a superseded job, or an older attempt
            _update(row, event)
        changed[row.path] = row
        history.append({"stream_id": event.stream_id, "job_id": event.job_id, "state": event.state,
                        "attempt": event.attempt, "worker": event.worker, "error": event.error, "at": utc(event.at)})
    for row in changed.values():
        row.save()
    if history:
        History.insert_many(history).on_conflict_ignore().execute()


def _newer(event, row):
    current = (row.order_attempt, row.order_phase)
    # A reconciler's guess yields to any event the job itself sent for the same step.
    return event.order > current if event.worker == RECONCILE else event.order >= current


def _reset(row, event):
    row.job_id, row.queue, row.status = event.job_id, event.queue, QUEUED
    row.patterns = json.dumps(event.patterns or [])
    row.counts = row.lines = row.bytes = row.compression = row.error = row.worker = None
    row.attempts = 0
    row.enqueued_at = row.updated_at = utc(event.at)
    row.started_at = row.ended_at = None
    row.order_attempt, row.order_phase = event.order


def _update(row, event):
    row.status = event.state
    row.attempts = max(row.attempts, event.attempt)
    row.order_attempt, row.order_phase = event.order
    row.updated_at = utc(event.at)
    if event.worker and event.worker != RECONCILE:
        row.worker = event.worker
    if event.state == STARTED:
        row.started_at, row.ended_at = utc(event.at), None
    elif event.state == FINISHED:
        result = event.result or {}
        row.counts = json.dumps(result.get("counts", {}))
        row.lines, row.bytes, row.compression = result.get("lines"), result.get("bytes"), result.get("compression")
        row.error, row.ended_at = None, utc(event.at)
    else:
        row.error = event.error
        if event.state == FAILED:
            row.ended_at = utc(event.at)
