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

import contextlib
import logging
import operator
import os
import socket
import time
from types import SimpleNamespace

import redis
from redis.exceptions import LockError
from peewee import PeeweeException, __exception_wrapper__ as _as_peewee_error
from rq.exceptions import NoSuchJobError

from . import events, fastjson, scanner, tracking, wire
from .defaults import (
    ATTEMPTS_KEY, DEFAULT_KEEPER_INTERVAL, DONE_KEY, DEFAULT_MIRROR_BATCH, DEFAULT_RECONCILE_INTERVAL, EVENTS_GROUP,
    EVENTS_KEY, FAILED, FINAL_STATES, FINISHED, HEADS_KEY, INODES_KEY, MIRROR_ALIVE_KEY, MIRROR_LOCK_KEY, MOVED,
    QUEUED, SCANNED_KEY, SCHEDULED, STARTED,
)
from .exceptions import LogJobsError, one_line
from .keeper import Keeper, sweep
from .models import History, Scan, db, stored_utc, transaction
from .jobs import done_record
from .queues import _record as queues_record
from .queues import failure_reason, record_scanned, statuses
from .rqsafe import Job

log = logging.getLogger(__name__)

CONSUMER = "mirror"   # one name for every mirror: the lock holder re-reads whatever a dead one left
LOCK_TIMEOUT = 10     # s; renewed after every batch, so a dead mirror's lock frees within this
RECONCILE = "reconcile"  # worker name marking an event the reconciler synthesised
#: Bytes of stream entries a drain step reads, at most (but for an event bigger than an entry may
#: hold): its memory and its transaction stay bounded however long the backlog (a mirror back after an
#: outage). A step's rows show when it commits: 1 MB (the events of ~5,000 files counted without the
#: analysis) shows the first events of a burst sooner than 4 MB did.
STEP_BYTES = 1 << 20
#: Fields of each rotation index (INODES_KEY, HEADS_KEY) looked at per reconciliation: a sweep's step.
SWEEP_BATCH = 1000
#: RQ statuses of a job whose attempt has ended, other than finished, mapped to the row's state.
_RQ_ENDED = {"failed": FAILED, "stopped": FAILED, "canceled": FAILED, "queued": QUEUED, "scheduled": SCHEDULED}
_ENDED_UNRUN = ("failed", "stopped", "canceled")


class Mirror:
    def __init__(self, conn, batch=DEFAULT_MIRROR_BATCH, keeper=None):
        self.conn, self.batch = conn, batch
        self.keeper = keeper if keeper is not None else Keeper(conn)
        self.lock = conn.lock(MIRROR_LOCK_KEY, timeout=LOCK_TIMEOUT)
        self._sweep = {INODES_KEY: 0, HEADS_KEY: 0}  # where forget_stale_records goes on in each hash

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
            with contextlib.suppress(redis.RedisError):
                self.keeper.close()
            self.lock.release()

    def run(self, stop, keeper_interval=DEFAULT_KEEPER_INTERVAL, reconcile_interval=DEFAULT_RECONCILE_INTERVAL):
        """Mirror until `stop` (a threading.Event) is set; survive Redis and database outages."""
        try:
            self._run(stop, keeper_interval, reconcile_interval)
        finally:
            with contextlib.suppress(redis.RedisError):
                self.keeper.close()

    def _run(self, stop, keeper_interval, reconcile_interval):
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
                self.conn.set(MIRROR_ALIVE_KEY, socket.gethostname(), ex=LOCK_TIMEOUT)
                backoff = 1.0
                self.wait_for_events(keeper_interval)
            except (redis.RedisError, PeeweeException) as exc:
                log.warning("mirror: %s: %s; retrying in %.0f s", type(exc).__name__, one_line(str(exc)), backoff)
                if isinstance(exc, PeeweeException):
                    # The connection may be dead (the server restarted): the next use opens a new one.
                    with contextlib.suppress(PeeweeException):
                        db.close()
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    # -- applying events -------------------------------------------------------------------------

    def drain(self):
        """Apply every event in the stream; returns how many."""
        self._ensure_group()
        applied = 0
        while entries := self._step():
            batch = [event for entry_id, fields in entries for event in _events(entry_id, fields)]
            with transaction():
                scanned = apply(batch)
            ids = [entry_id for entry_id, _ in entries]
            with self.conn.pipeline(transaction=True) as pipe:
                record_scanned(pipe, scanned)
                pipe.xack(EVENTS_KEY, EVENTS_GROUP, *ids)
                pipe.xtrim(EVENTS_KEY, minid=ids[-1])
                pipe.execute()
            applied += len(batch)
            self.lock.reacquire()  # a long backlog must not outlast the lock
        return applied

    def _step(self):
        """The entries of the next step: at most STEP_BYTES of them, read as many at a time as surely fit
        (an entry holds at most events.ENTRY_BYTES). Entries delivered before but never acknowledged (a
        mirror died mid-step) come first."""
        entries, size, after = [], 0, "0"
        while True:
            count = max(1, min(self.batch, (STEP_BYTES - size) // events.ENTRY_BYTES))
            got = self._read(after, count)
            entries += got
            size += sum(len(fields.get(b"events", b"")) for _, fields in got)
            if len(got) < count:
                if after == ">":
                    return entries  # the stream is drained
                after = ">"  # no more left pending: on to new entries
            elif after != ">":
                after = got[-1][0]  # more pending, after these
            if STEP_BYTES - size < events.ENTRY_BYTES:
                return entries

    def _release(self):
        try:
            self.lock.release()
        except LockError:
            pass  # expired already: the next cycle takes it again

    def _read(self, start, count):
        reply = self.conn.xreadgroup(EVENTS_GROUP, CONSUMER, {EVENTS_KEY: start}, count=count)
        return [(i, f) for _, entries in reply for i, f in entries] if reply else []

    def _ensure_group(self):
        try:
            self.conn.xgroup_create(EVENTS_KEY, EVENTS_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def wait_for_events(self, timeout):
        """Sleep until an entry is appended that no mirror has read yet, or `timeout` seconds pass."""
        # From the group's last delivered entry, not "$": an entry appended while this mirror was
        # busy must wake it at once.
        group = self._group()
        last = group["last-delivered-id"] if group else "0-0"
        self.conn.xread({EVENTS_KEY: last}, block=int(timeout * 1000), count=1)

    def _group(self):
        groups = self.conn.xinfo_groups(EVENTS_KEY) if self.conn.exists(EVENTS_KEY) else []
        return next((g for g in groups if g["name"] in (EVENTS_GROUP, EVENTS_GROUP.encode())), None)

    # -- reconciling with RQ ---------------------------------------------------------------------

    def reconcile(self):
        """Append an event for every unfinished part whose job RQ knows to be elsewhere; returns them.
        Also requeues jobs lost between a worker's pop and its start, and takes a step of the sweeps that
        forget expired jobs' attempt counts and stale rotation index entries."""
        rows = Scan.select(Scan.path, Scan.part_states).where(Scan.status.not_in(FINAL_STATES)).tuples()
        todo = [(path, i, part) for path, states in rows for i, part in enumerate(fastjson.loads(states))
                if part is not None and part["state"] not in FINAL_STATES]
        # Small files share a job: RQ is asked once per job, not once per file.
        ids = list(dict.fromkeys(part["job_id"] for _, _, part in todo))
        jobs = {}
        for start in range(0, len(ids), self.batch):
            chunk = ids[start:start + self.batch]
            jobs.update(zip(chunk, zip(statuses(self.conn, chunk), self.conn.hmget(ATTEMPTS_KEY, chunk))))
        found, queued = [], set()
        for path, i, part in todo:
            status, attempt = jobs[part["job_id"]]
            if status == QUEUED:
                queued.add(part["job_id"])
            event = _missed(self.conn, path, i, part, status, wire.number(attempt))
            if event is not None:
                found.append(event)
        if found:
            events.emit(self.conn, *found)
        self.keeper.requeue_orphans(queued)
        self.keeper.forget_expired()
        self.forget_stale_records()
        return found

    def forget_stale_records(self, batch=SWEEP_BATCH):
        """Drop the entries of INODES_KEY and HEADS_KEY that no record of a finished scan holds any
        more (its file was replaced under its name, or moved on to another): else the hashes would gain
        an entry per file ever scanned, for ever. A step of a sweep over each; returns the fields dropped.
        Only the mirror writes these hashes, under its lock, so an entry read here cannot change meanwhile.
        """
        dropped = []
        for key, field_of in ((INODES_KEY, tracking.inode_key), (HEADS_KEY, tracking.head_key)):
            def stale(entries, field_of=field_of):
                paths = list(entries.values())
                records = map(queues_record, self.conn.hmget(SCANNED_KEY, paths), map(os.fsdecode, paths))
                return [field for field, record in zip(entries, records)
                        if record is None or field_of(record) != wire.text(field)]

            self._sweep[key], gone = sweep(self.conn, key, self._sweep[key], batch, stale)
            dropped += gone
        return dropped


def _events(entry_id, fields):
    """The events of a stream entry; none for an entry trimmed while pending (it comes back without
    fields), or one that is not logjobs' (skipped, with a warning: it must not stop the mirror)."""
    if not fields:
        return []
    try:
        return events.read(entry_id, fields)
    except wire.Invalid as exc:
        log.warning("mirror: skipping stream entry %s: not events as logjobs sends them (%s)",
                    entry_id.decode() if isinstance(entry_id, bytes) else entry_id, exc)
        return []


def _missed(conn, path, index, part, status, attempt):
    """The event RQ's status of the part's job implies, if the part has nothing as new."""
    job_id, attempt = part["job_id"], max(attempt, part["attempt"])
    if status is None:
        state = FAILED
    elif status == FINISHED or status in _ENDED_UNRUN or status in _RQ_ENDED and attempt > 0:
        # Ended unrun: failed by a worker that could not read it, or canceled in RQ before it ran.
        state = _RQ_ENDED.get(status, status)
    else:
        return None
    event = events.Event(job_id, path, state, attempt, index, worker=RECONCILE)
    if event.order <= tuple(part["order"]):
        return None
    # Only now are the details worth fetching: the file's own record in the job, or why the job ended.
    record = done_record(conn.hget(DONE_KEY + job_id, os.fsencode(path)), job_id, path) or {}
    if record.get("result") is not None:
        event.state, event.result = FINISHED, record["result"]
    elif record.get("error") is not None:
        event.state, event.error = FAILED, record["error"]
    elif status is None:
        event.error = "the job vanished from Redis (Redis restarted without persistence, or the job expired); " \
                      "push the file again"
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


def apply(batch):
    """Apply events to the rows of the files they concern; call inside a transaction.

    Returns what Redis must learn once this commits: {path: record of its finished scan, or None
    when it has none to continue} (see tracking).
    """
    for event in batch:  # read from the stream, these are shapes; the rows keep plain JSON
        event.result, event.identity = wire.plain(event.result), wire.plain(event.identity)
    rows = _rows({e.path for e in batch} | {e.moved_from for e in batch if e.moved_from})
    stamp = stored_utc(db.obj)
    parts = {path: fastjson.loads(row.part_states) for path, row in rows.items()}
    changed, history, scanned = set(), [], {}
    for event in batch:
        applied = True
        if event.is_push:
            if event.part == 0:  # a new scan of the file: its row starts over
                base = _base(event, rows, parts, changed, scanned, stamp) if event.base else None
                if event.path in rows and rows[event.path].status == FINISHED:
                    # The row no longer holds the scan its record describes, which a push would continue
                    # (under this name or, taken for moved, another): this scan's record replaces it once
                    # it finishes; should it fail, the next push scans the file whole.
                    scanned[event.path] = None
                rows[event.path] = _reset(rows.get(event.path) or _new_row(event.path), event, stamp)
                parts[event.path] = [None] * event.parts
                if base is not None:
                    parts[event.path][0] = part = base
                    changed.add(event.path)
                    history.append(_history(event, rows[event.path], part, False, True, stamp))
                    continue
            parts[event.path][event.part] = part = {"job_id": event.job_id, "state": QUEUED, "attempt": 0,
                                                    "order": list(event.order), "at": event.at}
        elif event.path not in rows:
            continue  # of a file this database never saw pushed
        else:
            state = parts[event.path]
            part = state[event.part] if event.part < len(state) else None
            # Stale (a superseded scan, an older attempt): recorded, but it changes nothing.
            applied = part is not None and part["job_id"] == event.job_id and _newer(event, part)
            if applied:
                _update(part, event)
                if event.identity:  # the file the scan read, which is what its record must describe
                    rows[event.path].identity = fastjson.dumps(event.identity)
        if applied:
            changed.add(event.path)
        finished = applied and event.state == FINISHED and event.result is not None
        history.append(_history(event, rows[event.path], part, finished, applied, stamp))
    for path in changed:
        if rows[path].status != MOVED:
            _summarise(rows[path], parts[path], stamp)
            if rows[path].status == FINISHED:
                scanned[path] = _record(rows[path])
    _executemany(Scan, [_row_values(rows[p]) for p in changed], _ROW_FIELDS,
                 lambda q: q.on_conflict(conflict_target=[Scan.path], preserve=_ROW_UPDATES))
    _executemany(History, list(map(_history_values, history)), _HISTORY_FIELDS, lambda q: q.on_conflict_ignore())
    return scanned


def _rows(paths):
    """{path: row} of the files' rows in the database, as plain namespaces of the driver's own values.

    Not Model instances, nor Peewee's conversions: a row is written back as it was read, but for the
    fields apply() sets, so converting every field both ways would cost more than the SQL.
    """
    paths, rows = list(paths), {}
    names = [f.name for f in _ROW_FIELDS]
    for start in range(0, len(paths), _SELECT_CHUNK):
        chunk = paths[start:start + _SELECT_CHUNK]
        width = _select_width(len(chunk))
        select = _statement(("select", width), lambda: Scan.select(*_ROW_FIELDS).where(Scan.path.in_([""] * width)))
        cursor = db.execute_sql(select, chunk + chunk[-1:] * (width - len(chunk)))
        rows.update((row.path, row) for row in (SimpleNamespace(**dict(zip(names, values)))
                                                for values in cursor.fetchall()))
    return rows


#: Paths per SELECT: SQLite allows 32766 parameters per statement unless built with more.
_SELECT_CHUNK = 8192


def _select_width(n):
    """The number of paths a SELECT of `n` asks for: the next power of two (the last path repeated),
    so that a few statements, built once, serve every batch."""
    return 1 << max(n - 1, 0).bit_length()


def _history(event, row, part, finished, applied, stamp):
    return {"stream_id": event.stream_id, "job_id": event.job_id, "path": event.path, "part": event.part,
            "queue": row.queue, "state": event.state, "attempt": event.attempt, "worker": event.worker,
            "error": event.error, "at": stamp(event.at),
            "duration": event.at - part["started_at"] if finished and "started_at" in part else None,
            "counts": fastjson.dumps(event.result["counts"]) if finished else None, "applied": applied}


#: The order of a part that stands for an earlier scan: no event of that scan's jobs applies over it.
_BASE_ORDER = [1 << 62, 9]


def _base(event, rows, parts, changed, scanned, stamp):
    """Part 0 of a scan continuing the finished scan `event.base` of the file (under its old name, when
    it moved): that scan's whole result. When the row no longer holds that scan, the part fails, and
    the record goes, so that the next push scans the file whole."""
    source = event.moved_from or event.path
    row = rows.get(source)
    part = {"job_id": event.base, "attempt": 0, "order": _BASE_ORDER, "at": event.at}
    # A row this batch made (a file moved there, then on again: two rotations the mirror applies at
    # once) is summarised only at the batch's end: its parts tell whether it is finished.
    finished = row is not None and (row.status == FINISHED or source in changed and all(
        p is not None and p["state"] == FINISHED for p in parts[source]))
    if row is None or row.job_id != event.base or not finished:
        scanned[event.path] = scanned[source] = None
        return {**part, "state": FAILED, "ended_at": event.at,
                "error": f"the scan this one continues (of {source}) is no longer in the database: push the file "
                         "again"}
    results = [p["result"] for p in parts[source] if p and p.get("result")]
    part.update(state=FINISHED, ended_at=event.at, result=scanner.merge_dicts(results))
    if event.moved_from:
        row.status, row.moved_to, row.part_states = MOVED, event.path, "[]"
        row.counts = row.lines = row.bytes = row.scanned = row.error = row.levels = row.analysis = None
        row.updated_at = stamp(event.at)
        parts[source] = []
        changed.add(source)
        scanned[source] = None
    return part


def _record(row):
    """What push needs to know of a finished scan to continue it (see tracking.decide)."""
    if not row.identity:
        return None
    return {**fastjson.loads(row.identity), "job_id": row.job_id, "end": row.bytes, "tail": bool(row.tail),
            "patterns": fastjson.loads(row.patterns), "analysed": row.analysis is not None,
            "counts": fastjson.loads(row.counts), "lines": row.lines}


def _executemany(model, rows, fields, conflict):
    """Insert many rows with one prepared statement (see _statement). `fields` are in the model's order,
    as Peewee writes the statement's columns. Values go to the driver as they are: str, int, float, bool,
    None, times as models.stored_utc makes them, or what the driver itself returned (see _rows)."""
    if rows:
        statement = _statement(model, lambda: conflict(model.insert({f: None for f in fields})))
        with _as_peewee_error:  # the driver's errors as Peewee's, as Peewee's own execute_sql raises them
            db.cursor().executemany(statement, rows)


def _statement(key, query):
    """The SQL of `query()`, built once per key and database. Peewee builds a statement value by value,
    at several microseconds each: more than the database takes to run it, were it built every batch."""
    key = (key, db.obj)
    if key not in _STATEMENTS:
        _STATEMENTS[key] = query().sql()[0]
    return _STATEMENTS[key]


_STATEMENTS = {}


_ROW_FIELDS = [f for f in Scan._meta.sorted_fields if f.name != "id"]
_ROW_UPDATES = [f for f in _ROW_FIELDS if f.name != "path"]
_ROW_DEFAULTS = {f.name: f.default for f in _ROW_UPDATES}  # no callable default among them
_HISTORY_FIELDS = [f for f in History._meta.sorted_fields if f.name != "id"]
# A row's values in its fields' order, as executemany takes them.
_row_values = operator.attrgetter(*(f.name for f in _ROW_FIELDS))
_history_values = operator.itemgetter(*(f.name for f in _HISTORY_FIELDS))


def _new_row(path):
    """A row not in the database yet, with the model's defaults (`_reset` fills it in)."""
    return SimpleNamespace(**_ROW_DEFAULTS, path=path)


def _newer(event, part):
    current = tuple(part["order"])
    # A reconciler's guess yields to any event the job itself sent for the same step.
    return event.order > current if event.worker == RECONCILE else event.order >= current


def _reset(row, event, stamp):
    row.job_id, row.queue, row.status, row.parts = event.job_id, event.queue, QUEUED, event.parts
    row.patterns = fastjson.dumps(event.patterns or [])
    row.identity = fastjson.dumps(event.identity) if event.identity else None
    row.counts = row.lines = row.bytes = row.compression = row.error = row.worker = row.moved_to = None
    row.levels = row.analysis = None
    row.scanned, row.tail = None, False
    row.attempts = 0
    row.enqueued_at = row.updated_at = stamp(event.at)
    row.started_at = row.ended_at = None
    return row


def _update(part, event):
    part.update(state=event.state, attempt=max(part["attempt"], event.attempt), order=list(event.order), at=event.at)
    if event.worker and event.worker != RECONCILE:
        part["worker"] = event.worker
    if event.state == STARTED:
        part["started_at"] = event.at  # of the latest attempt
    elif event.started_at is not None:  # an outcome whose `started` was not sent (see jobs.Reporter)
        part["started_at"] = event.started_at
    if event.state == FINISHED:
        part["result"], part["error"], part["ended_at"] = event.result, None, event.at
    elif event.state != STARTED:
        part["error"] = event.error
        if event.state == FAILED:
            part["ended_at"] = event.at


def _summarise(row, parts, stamp):
    """The file's row from its parts: failed if one failed, finished when all have, started while one
    runs, else waiting (scheduled if a part waits for its retry, else queued). Parts already finished
    (another range, or the earlier scan a grown file's new one continues) do not make it `started`:
    that says a worker is on it."""
    row.part_states = fastjson.dumps(parts)
    if all(p is not None and tuple(p["order"]) == events.PUSH_ORDER for p in parts):
        return  # every part as its push left it: so is the row (see _reset), and a push is most events
    known = [p for p in parts if p is not None]
    states = {p["state"] for p in known}
    if FAILED in states:
        row.status = FAILED
    elif states == {FINISHED} and len(known) == row.parts:
        row.status = FINISHED
    elif STARTED in states:
        row.status = STARTED
    else:
        row.status = SCHEDULED if SCHEDULED in states else QUEUED
    row.attempts = max((p["attempt"] for p in known), default=0)
    latest = max(known, key=lambda p: p.get("at", 0))
    row.worker = latest.get("worker") or row.worker
    row.updated_at = stamp(latest["at"])
    row.error = next((p["error"] for p in known if p["state"] == FAILED), None) or (
        latest.get("error") if row.status != FINISHED else None)
    starts = [p["started_at"] for p in known if p.get("started_at")]
    row.started_at = stamp(min(starts)) if starts else None
    row.ended_at = stamp(max(p["ended_at"] for p in known if p.get("ended_at"))) if row.status in FINAL_STATES else None
    if row.status == FINISHED:
        merged = scanner.merge_dicts([p["result"] for p in known if p.get("result")])
        analysis = merged.get("analysis")
        row.counts, row.lines, row.bytes, row.compression, row.tail = (
            fastjson.dumps(merged["counts"]), merged["lines"], merged["bytes"], merged.get("compression"),
            merged.get("tail", False))
        row.levels = fastjson.dumps(analysis["levels"]) if analysis else None
        row.analysis = fastjson.dumps(analysis) if analysis else None
        # What this scan read: all of it, or (continuing an earlier scan, as part 0) what was new.
        row.scanned = sum(p["result"]["bytes"] for p in known if p.get("result") and p["order"] != _BASE_ORDER)
