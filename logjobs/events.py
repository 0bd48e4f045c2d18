"""State changes of file scans, carried from wherever they happen to the mirror through a Redis stream.

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

from . import wire
from .defaults import EVENTS_KEY, FAILED, FINISHED, QUEUED, SCHEDULED, STARTED

log = logging.getLogger(__name__)

#: Within one attempt: its start, then a retry wait, then its final outcome.
_PHASE = {STARTED: 1, QUEUED: 2, SCHEDULED: 2, FINISHED: 3, FAILED: 3}
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
    parts: _Parts | None = None          # only on the push's event: how many parts the file has
    queue: wire.Text | None = None       # only on the push's event
    patterns: list[str] | None = None    # only on the push's event
    # tracking.Identity's fields: on the push's event of part 0, at push time; on the `finished` of a
    # whole file's scan, of the file the scan read. (Events are built with plain dicts there; read back,
    # these and `result` are shapes: wire.plain() makes them dicts again.)
    identity: wire.Identity | None = None
    base: wire.Text | None = None        # on that event of a scan continuing the scan of job `base`,
    since: wire.Offset | None = None     # from byte `since` on,
    moved_from: wire.Path | None = None  # of the file that had this other name
    worker: wire.Text | None = None
    error: wire.Text | None = None
    result: wire.Result | None = None    # the scan result (scanner.ScanResult.to_dict()), on `finished`
    started_at: float | None = None      # on the outcome of a part whose `started` was never sent
    stream_id: str | None = None         # set when read back from the stream

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
        """Raise wire.Invalid unless the event makes sense as logjobs sends it (beyond its types)."""
        if self.is_push and (self.state != QUEUED or self.part >= self.parts or self.queue is None):
            raise wire.Invalid(f"a push event must say queued, a part below its parts, and a queue: {self.part}/"
                               f"{self.parts}")
        if self.state == FINISHED and self.result is None and not self.is_push:
            raise wire.Invalid("a finished event without its result")


#: JSON bytes of events an entry holds at most (one event bigger than that has an entry of its own):
#: the mirror reads entries a bounded number of bytes at a time, which it can only do by counting them.
ENTRY_BYTES = 64 << 10


def emit(conn, *evs):
    """Append events to the stream, in as few entries of at most ENTRY_BYTES as they fit in (`conn` may
    be a pipeline, to join a transaction)."""
    entry, size = [], 0
    for e in evs:
        text = wire.encode(e)
        if entry and size + len(text) > ENTRY_BYTES:
            _add(conn, entry)
            entry, size = [], 0
        entry.append(text)
        size += len(text) + 1
    if entry:
        _add(conn, entry)


def _add(conn, texts):
    # No MAXLEN: an entry the mirror has not applied must never be trimmed; it trims applied ones.
    conn.xadd(EVENTS_KEY, {"events": b"[" + b",".join(texts) + b"]"})


def read(entry_id, fields):
    """The events of one stream entry; each gets a stream id of its own, `<entry id>/<index>`.

    Fields this version does not know (sent by a newer logjobs on some worker) are left out. An entry
    that is not a list of events as logjobs sends them raises wire.Invalid: it came from elsewhere."""
    entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    found = wire.decode(fields.get(b"events"), list[Event])
    for i, event in enumerate(found):
        event.check()
        event.stream_id = f"{entry_id}/{i}"
    return found
