"""State changes of file scans, carried from wherever they happen to the mirror through a Redis
stream.

Workers on other hosts never open the status database: they append events to one stream, which
outlives the mirror being down, and the mirror applies them in order. An event concerns one part of
one file (a file is scanned whole, as part 0 of 1, or split into byte ranges) as run by one job, and
carries the job's attempt number, so an event that arrives late (from a worker cut off by a
partition) can be told apart from a newer one: see `Event.order`.
"""

import logging
import time
from typing import Annotated

import msgspec
import redis

from . import wire
from .defaults import (
    CANCELED,
    EVENTS_GROUP,
    EVENTS_KEY,
    FAILED,
    FINISHED,
    FORGOTTEN,
    QUEUED,
    SCHEDULED,
    STARTED,
)

log = logging.getLogger(__name__)

#: Within one attempt: its start, then a retry wait, then its final outcome.
_PHASE: dict[str, int] = {
    STARTED: 1,
    QUEUED: 2,
    SCHEDULED: 2,
    FINISHED: 3,
    FAILED: 3,
    CANCELED: 3,
    FORGOTTEN: 3,
}
#: The order of a push's event: before every attempt.
PUSH_ORDER = (0, 0)
_Attempt = Annotated[int, msgspec.Meta(ge=0, le=1 << 30)]
_Parts = Annotated[int, msgspec.Meta(ge=1, le=wire.MAX_PARTS + 1)]


class Event(wire.Shape, omit_defaults=True):
    """One state change of one part of one file's scan. `state` is the part's state after it."""

    job_id: wire.Text
    path: wire.Path
    state: wire.State
    attempt: _Attempt = 0
    part: wire.Part = 0
    at: float = msgspec.field(default_factory=time.time)
    parts: _Parts | None = None  # only on the push's event: how many parts the file has
    queue: wire.Text | None = None  # only on the push's event
    patterns: list[str] | None = None  # only on the push's event
    ignore_case: bool = False  # only on the push's event: its patterns match whatever the case
    # tracking.Identity's fields: on the push's event of part 0, at push time; on the `finished` of
    # a whole file's scan, of the file the scan read. (Events are built with plain dicts there; read
    # back, these and `result` are shapes: wire.plain() makes them dicts again.)
    identity: wire.Identity | None = None
    base: wire.Text | None = None  # on that event of a scan continuing the scan of job `base`,
    since: wire.Offset | None = None  # from byte `since` on,
    moved_from: wire.Path | None = None  # of the file that had this other name
    worker: wire.Text | None = None
    error: wire.Text | None = None
    result: wire.Result | None = (
        None  # the scan result (scanner.ScanResult.to_dict()), on `finished`
    )
    started_at: float | None = None  # on the outcome of a part whose `started` was never sent
    stream_id: str | None = None  # set when read back from the stream

    @property
    def is_push(self):
        return self.parts is not None

    @property
    def order(self):
        """Events of a part apply in this order; one ordered before the part's last one is stale."""
        if self.is_push:
            return PUSH_ORDER
        return (self.attempt, _PHASE[self.state])

    def check(self):
        """Raise wire.Invalid unless the event makes sense as logjobs sends it (beyond its
        types)."""
        if self.parts is not None and (
            self.state != QUEUED or self.part >= self.parts or self.queue is None
        ):
            raise wire.Invalid(
                f"a push event must say queued, a part below its parts, and a queue: {self.part}/"
                f"{self.parts}"
            )
        if self.state == FINISHED and self.result is None and not self.is_push:
            raise wire.Invalid("a finished event without its result")
        if self.state in (CANCELED, FORGOTTEN) and self.is_push:
            raise wire.Invalid(f"a push event cannot say {self.state}")


#: JSON bytes of events an entry holds at most (one event bigger than that has an entry of its own):
#: the mirror reads entries a bounded number of bytes at a time, which it can only do by counting
#: them.
ENTRY_BYTES = 64 << 10


def emit(conn, *evs):
    """Append events to the stream, in as few entries of at most ENTRY_BYTES as they fit in (`conn`
    may be a pipeline, to join a transaction)."""
    entry: list[bytes] = []
    size = 0
    for e in evs:
        text = wire.encode(e)
        if entry and size + len(text) > ENTRY_BYTES:
            _add(conn, entry)
            entry, size = [], 0
        entry.append(text)
        size += len(text) + 1
    if entry:
        _add(conn, entry)


def forget(conn, paths):
    """Have the mirror drop the rows, history and scan records of `paths` (`logjobs forget`)."""
    emit(conn, *(Event("", path, FORGOTTEN) for path in paths))


def _add(conn, texts):
    # No MAXLEN: an entry the mirror has not applied must never be trimmed; it trims applied ones.
    conn.xadd(EVENTS_KEY, {"events": b"[" + b",".join(texts) + b"]"})


def read(entry_id, fields):
    """The events of one stream entry; each gets a stream id of its own, `<entry id>/<index>`.

    Fields this version does not know (sent by a newer logjobs on some worker) are left out. An
    entry that is not a list of events as logjobs sends them raises wire.Invalid: it came from
    elsewhere."""
    entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    found = wire.decode(fields.get(b"events"), list[Event])
    for i, event in enumerate(found):
        event.check()
        event.stream_id = f"{entry_id}/{i}"
    return found


#: The one consumer name of the mirrors' group: whichever holds the lock re-reads what a dead one
#: left.
CONSUMER = "mirror"
#: Bytes of stream entries a step reads, at most (but for an event bigger than an entry may hold):
#: its memory and its transaction stay bounded however long the backlog (a mirror back after an
#: outage). A step's rows show when it commits: 1 MB (the events of ~5,000 files counted without the
#: analysis) shows the first events of a burst sooner than 4 MB did.
STEP_BYTES = 1 << 20


class Stream:
    """The events stream as its one reader, the mirror, reads it: through the consumer group, a
    bounded step at a time, each step acknowledged (and trimmed) once the database has it."""

    def __init__(self, conn, batch):
        self.conn, self.batch = conn, batch  # batch: entries read per round trip, at most

    def ensure_group(self):
        try:
            self.conn.xgroup_create(EVENTS_KEY, EVENTS_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def step(self):
        """The entries (id, fields) of the next step: at most STEP_BYTES of them, read as many at a
        time as surely fit (an entry holds at most ENTRY_BYTES). Entries delivered before but never
        acknowledged (a mirror died mid-step) come first."""
        entries = []
        size = 0
        after = "0"
        while True:
            count = max(1, min(self.batch, (STEP_BYTES - size) // ENTRY_BYTES))
            got = self._read(after, count)
            entries += got
            size += sum(len(fields.get(b"events", b"")) for _, fields in got)
            if len(got) < count:
                if after == ">":
                    return entries  # the stream is drained
                after = ">"  # no more left pending: on to new entries
            elif after != ">":
                after = got[-1][0]  # more pending, after these
            if STEP_BYTES - size < ENTRY_BYTES:
                return entries

    @staticmethod
    def done(pipe, entry_ids):
        """Acknowledge a step's entries, and trim the stream of them (`pipe` joins a
        transaction)."""
        pipe.xack(EVENTS_KEY, EVENTS_GROUP, *entry_ids)
        pipe.xtrim(EVENTS_KEY, minid=entry_ids[-1])

    def wait(self, timeout):
        """Sleep until an entry is appended that no mirror has read yet, or `timeout` seconds
        pass."""
        # From the group's last delivered entry, not "$": an entry appended while this mirror was
        # busy must wake it at once.
        group = self._group()
        last = group["last-delivered-id"] if group else "0-0"
        self.conn.xread({EVENTS_KEY: last}, block=int(timeout * 1000), count=1)

    def _read(self, start, count):
        reply = self.conn.xreadgroup(EVENTS_GROUP, CONSUMER, {EVENTS_KEY: start}, count=count)
        return [(i, f) for _, entries in reply for i, f in entries] if reply else []

    def _group(self):
        groups = self.conn.xinfo_groups(EVENTS_KEY) if self.conn.exists(EVENTS_KEY) else []
        return next((g for g in groups if g["name"] in (EVENTS_GROUP, EVENTS_GROUP.encode())), None)
