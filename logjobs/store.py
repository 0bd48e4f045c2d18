"""logjobs' own Redis structures, each owned by one class that alone knows its keys (as rq's
registry.py does for RQ's). What a class reads back is checked (see wire): a value that is not as
logjobs writes it is skipped, with one warning, never trusted. The event stream has a module of its
own (events).

Methods that write take `pipe`, a client or a pipeline, so that a caller can join them into one
transaction; `conn` is a client.
"""

import fnmatch
import os
import secrets

import redis

from . import wire
from .defaults import (
    ATTEMPTS_KEY,
    BEAT_KEY,
    CANCELED_KEY,
    DEFAULT_FAILURE_TTL,
    DONE_KEY,
    FILES_KEY,
    HANDED_ON_KEY,
    HEADS_KEY,
    INODES_KEY,
    MIRROR_ALIVE_KEY,
    MIRROR_LOCK_KEY,
    ORPHANS_KEY,
    PUSHED_KEY,
    SCANNED_KEY,
)
from .rqsafe import warn_once

#: Seconds a push's marker (see `once`) and a given-up attempt's mark are kept.
PUSH_MARKER_TTL = 3600
HANDED_ON_TTL = 24 * 3600


def _field(path: str) -> bytes:
    """A file's path as a hash field: its bytes (a name need not be UTF-8)."""
    return os.fsencode(path)


def sweep_hash(conn, key, cursor, batch, stale):
    """One step of a sweep over the hash `key`: from `cursor`, about `batch` fields, of which those
    that `stale({field: value})` lists are dropped. Returns the cursor to go on from (0: the sweep
    starts over) and the fields dropped. A hash that would otherwise gain a field per job or file,
    for ever, is swept a step at a time from the mirror's loop."""
    cursor, entries = conn.hscan(key, cursor, count=batch)
    dropped = stale(entries) if entries else []
    if dropped:
        conn.hdel(key, *dropped)
    return cursor, dropped


class ScanRecords:
    """What was counted of each file by its last finished scan (wire.Record), by path, and the two
    indexes that find a record by its file's inode or head when the file has another name now."""

    def __init__(self, conn):
        self.conn = conn

    def get(self, paths) -> dict:
        """{path: its wire.Record, or None}."""
        raw = self.conn.hmget(SCANNED_KEY, [_field(p) for p in paths])
        return {p: self._record(r, p) for p, r in zip(paths, raw)}

    def named(self, idents) -> dict:
        """{path: [the paths the inode index, then the head index, name for its identity]} of
        {path: tracking.Identity}; a path not found is left out of its list."""
        with self.conn.pipeline(transaction=False) as pipe:
            for ident in idents.values():
                pipe.hget(INODES_KEY, ident.inode_key)
                pipe.hget(HEADS_KEY, ident.head_key)
            found = iter(pipe.execute())
        return {p: [os.fsdecode(o) for o in (next(found), next(found)) if o] for p in idents}

    @staticmethod
    def write(pipe, scanned):
        """Record {path: wire.Record, or None: nothing a push can continue} (see tracking)."""
        gone = [_field(p) for p, record in scanned.items() if record is None]
        if gone:
            pipe.hdel(SCANNED_KEY, *gone)
        records = {p: r for p, r in scanned.items() if r is not None}
        if records:
            from . import tracking

            pipe.hset(SCANNED_KEY, mapping={_field(p): wire.encode(r) for p, r in records.items()})
            pipe.hset(
                INODES_KEY, mapping={tracking.inode_key(r): _field(p) for p, r in records.items()}
            )
            pipe.hset(
                HEADS_KEY, mapping={tracking.head_key(r): _field(p) for p, r in records.items()}
            )

    def forget_stale(self, cursors, batch):
        """Drop the index entries that no record holds any more (its file was replaced under its
        name, or moved on), a step of a sweep over each index from `cursors` ({key: cursor},
        updated); returns the fields dropped. Only the mirror writes the indexes, under its lock."""
        from . import tracking

        dropped = []
        for key, field_of in ((INODES_KEY, tracking.inode_key), (HEADS_KEY, tracking.head_key)):

            def stale(entries, field_of=field_of):
                paths = list(map(os.fsdecode, entries.values()))
                records = self.get(paths)
                return [
                    field
                    for field, path in zip(entries, paths)
                    if records[path] is None or field_of(records[path]) != wire.text(field)
                ]

            cursors[key], gone = sweep_hash(self.conn, key, cursors.get(key, 0), batch, stale)
            dropped += gone
        return dropped

    @staticmethod
    def _record(raw, path):
        from .scanner import printable

        return wire.read(raw, wire.Record, f"the scan record of {printable(path)}", warn_once)


class LatestJobs:
    """The ids of the jobs of each file's latest scan (a split file has one per part), by path."""

    def __init__(self, conn):
        self.conn = conn

    def get(self, paths) -> dict:
        """{path: [job ids]} for the paths pushed before."""
        ids = self.conn.hmget(FILES_KEY, [_field(p) for p in paths])
        return {p: wire.text(i).split() for p, i in zip(paths, ids) if i}

    def matching(self, glob) -> dict:
        """{path: [job ids]} for the paths pushed before that match `glob` (fnmatch's, where '*'
        spans '/'): a pass over every path ever pushed."""
        return {
            path: wire.text(ids).split()
            for key, ids in self.conn.hscan_iter(FILES_KEY, count=1000)
            if fnmatch.fnmatchcase(path := os.fsdecode(key), glob)
        }

    @staticmethod
    def set(pipe, files):
        """Record {path: [job ids]} as each file's latest scan."""
        pipe.hset(FILES_KEY, mapping={_field(p): " ".join(ids) for p, ids in files.items()})


class DoneFiles:
    """What each job has done with its files (wire.Done: a result without the analysis, or why a
    file failed for good), kept as long as RQ keeps a failed job: for a retry, `push --wait` and the
    reconciler."""

    def __init__(self, conn):
        self.conn = conn

    @staticmethod
    def record(pipe, job_id, done):
        """Record {path: {"result": ...} or {"error": ...}} done by `job_id`."""
        pipe.hset(DONE_KEY + job_id, mapping={_field(p): wire.encode(v) for p, v in done.items()})
        pipe.expire(DONE_KEY + job_id, DEFAULT_FAILURE_TTL)

    def ended(self, job_id) -> set:
        """The files an earlier attempt of the job finished, or failed for good."""
        return {os.fsdecode(k) for k in self.conn.hkeys(DONE_KEY + job_id)}

    def finished(self, job_id) -> set:
        """The files an earlier attempt of the job finished (not those that failed for good)."""
        return {
            os.fsdecode(k)
            for k, v in self.conn.hgetall(DONE_KEY + job_id).items()
            if getattr(self._done(v, job_id, os.fsdecode(k)), "result", None) is not None
        }

    def get(self, pairs) -> list:
        """The wire.Done (or None) of each (job id, path) pair, in one round trip."""
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id, path in pairs:
                pipe.hget(DONE_KEY + job_id, _field(path))
            return [
                self._done(raw, job_id, path) for (job_id, path), raw in zip(pairs, pipe.execute())
            ]

    @staticmethod
    def _done(raw, job_id, path):
        from .scanner import printable

        return wire.read(
            raw, wire.Done, f"the record of {printable(path)} done by {job_id}", warn_once
        )


class CanceledFiles:
    """The files of each job that `logjobs cancel` took back: the job (a batch of small files may
    scan on the others) skips them, and a push does not take them for in flight. Kept as long as
    DoneFiles."""

    def __init__(self, conn):
        self.conn = conn

    @staticmethod
    def add(pipe, job_id, paths):
        pipe.sadd(CANCELED_KEY + job_id, *map(_field, paths))
        pipe.expire(CANCELED_KEY + job_id, DEFAULT_FAILURE_TTL)

    def get(self, job_id) -> set:
        return {os.fsdecode(k) for k in self.conn.smembers(CANCELED_KEY + job_id)}

    def has(self, pairs) -> list:
        """Whether each (job id, path) pair was taken back, in one round trip."""
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id, path in pairs:
                pipe.sismember(CANCELED_KEY + job_id, _field(path))
            return [bool(found) for found in pipe.execute()]


class Attempts:
    """How many runs of each job have started (RQ's own count is of retries left, not runs made)."""

    def __init__(self, conn):
        self.conn = conn

    def next(self, job_id) -> int:
        """Count a new run of the job; its number."""
        return self.conn.hincrby(ATTEMPTS_KEY, job_id, 1)

    def get(self, job_id) -> int:
        return wire.number(self.conn.hget(ATTEMPTS_KEY, job_id))

    def get_many(self, job_ids) -> list:
        return [wire.number(n) for n in self.conn.hmget(ATTEMPTS_KEY, job_ids)] if job_ids else []

    def forget_gone(self, cursor, batch, exist):
        """A step of a sweep over the counts from `cursor`, dropping those of the jobs that
        `exist(ids)` says (a bool each) no longer exist; returns the cursor to go on from and the
        ids dropped."""

        def gone(entries):
            fields = list(entries)
            return [
                f for f, alive in zip(fields, exist([wire.text(f) for f in fields])) if not alive
            ]

        cursor, dropped = sweep_hash(self.conn, ATTEMPTS_KEY, cursor, batch, gone)
        return cursor, [wire.text(f) for f in dropped]


class Heartbeats:
    """A short-lived key per running scan, refreshed by its work-horse: it is alive while the key
    is."""

    def __init__(self, conn):
        self.conn = conn

    def beat(self, job_id, worker, ttl):
        self.conn.set(BEAT_KEY + job_id, worker, ex=ttl)

    def stop(self, job_id):
        self.conn.delete(BEAT_KEY + job_id)

    def alive(self, job_ids) -> list:
        """Whether each job's heartbeat is there, in one round trip."""
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(BEAT_KEY + job_id)
            return [bool(n) for n in pipe.execute()]


class HandedOn:
    """The attempts the keeper gave up (their worker silent), so that one coming back leaves
    quietly."""

    def __init__(self, conn):
        self.conn = conn

    def mark(self, job_id, attempt, worker):
        self.conn.set(f"{HANDED_ON_KEY}{job_id}:{attempt}", worker, ex=HANDED_ON_TTL)

    def given_up(self, job_id, attempt) -> bool:
        return self.conn.get(f"{HANDED_ON_KEY}{job_id}:{attempt}") is not None


class Orphans:
    """When each job was first seen saying "queued" while in no queue (see
    keeper.requeue_orphans)."""

    def __init__(self, conn):
        self.conn = conn

    def seen(self, now) -> dict:
        """{job id: when first seen}; a time that is not one counts as `now`."""
        return {
            wire.text(k): wire.number(v, now, float)
            for k, v in self.conn.hgetall(ORPHANS_KEY).items()
        }

    def update(self, gone, new):
        """Forget the jobs `gone`; remember {job id: time} `new`."""
        with self.conn.pipeline(transaction=False) as pipe:
            if gone:
                pipe.hdel(ORPHANS_KEY, *gone)
            if new:
                pipe.hset(ORPHANS_KEY, mapping=new)
            pipe.execute()


def once(conn, queue_commands, tries=3):
    """Run the commands `queue_commands(pipe)` queues as one transaction, exactly once.

    redis-py sends a MULTI/EXEC again when its reply is lost (a connection cut, a partition): had
    it run, every job would be enqueued twice. Under WATCH it does not; so the transaction WATCHes a
    marker it sets, and when its reply is lost, the marker says whether it ran.
    """
    marker = PUSHED_KEY + secrets.token_hex(8)
    for attempt in range(tries):
        try:
            with conn.pipeline(transaction=True) as pipe:
                pipe.watch(marker)
                pipe.multi()
                queue_commands(pipe)
                pipe.set(marker, 1, ex=PUSH_MARKER_TTL)
                pipe.execute()
                return
        except (redis.ConnectionError, redis.TimeoutError, redis.WatchError):
            # Asked on a new connection, with the client's retries (a question may be asked twice).
            if conn.exists(marker):
                return
            if attempt == tries - 1:
                raise


class MirrorPresence:
    """The lock mirrors take turns under, and the mark a running mirror leaves after each cycle."""

    def __init__(self, conn, timeout):
        self.conn, self.timeout = conn, timeout
        self.lock = conn.lock(MIRROR_LOCK_KEY, timeout=timeout)
        self.name = MIRROR_LOCK_KEY

    def mark_alive(self, host):
        self.conn.set(MIRROR_ALIVE_KEY, host, ex=self.timeout)

    @staticmethod
    def alive(conn):
        """The host of a mirror that finished a cycle lately, or None."""
        host = conn.get(MIRROR_ALIVE_KEY)
        return wire.text(host) if host is not None else None
