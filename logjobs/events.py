"""State changes of file scans, carried from wherever they happen to the mirror through a Redis stream.

Workers on other hosts never open the status database: they append events to one stream, which
outlives the mirror being down, and the mirror applies them in order. An event concerns one part of
one file (a file is scanned whole, as part 0 of 1, or split into byte ranges) as run by one job, and
carries the job's attempt number, so an event that arrives late (from a worker cut off by a
partition) can be told apart from a newer one: see `Event.order`.
"""

import dataclasses
import time

from . import fastjson
from .defaults import EVENTS_KEY, FAILED, FINISHED, QUEUED, SCHEDULED, STARTED

#: Within one attempt: its start, then a retry wait, then its final outcome.
_PHASE = {STARTED: 1, QUEUED: 2, SCHEDULED: 2, FINISHED: 3, FAILED: 3}
#: The order of a push's event: before every attempt.
PUSH_ORDER = (0, 0)


@dataclasses.dataclass
class Event:
    """One state change of one part of one file's scan. `state` is the part's state after it."""

    job_id: str
    path: str
    state: str
    attempt: int = 0
    part: int = 0
    at: float = dataclasses.field(default_factory=time.time)
    parts: int | None = None          # only on the push's event: how many parts the file has
    queue: str | None = None          # only on the push's event
    patterns: list | None = None      # only on the push's event
    identity: dict | None = None      # tracking.Identity: on the push's event of part 0, at push time; on
                                      # the `finished` of a whole file's scan, of the file the scan read
    base: str | None = None           # on that event of a scan continuing the scan of job `base`,
    since: int | None = None          # from byte `since` on,
    moved_from: str | None = None     # of the file that had this other name
    worker: str | None = None
    error: str | None = None
    result: dict | None = None        # the scan result, on `finished`
    started_at: float | None = None   # on the outcome of a part whose `started` was never sent
    stream_id: str | None = None      # set when read back from the stream

    @property
    def is_push(self):
        return self.parts is not None

    @property
    def order(self):
        """Events of a part apply in this order; one ordered before the part's last one is stale."""
        if self.is_push:
            return PUSH_ORDER
        return (self.attempt, _PHASE[self.state])

    def to_dict(self):
        """JSON-simple, without the defaults (lone surrogates of non-UTF-8 file names survive JSON).

        Shallow: dataclasses.asdict() deep-copies the result, and cost a worker more than the scan of a
        small file did."""
        return {k: v for k, v in vars(self).items()
                if v is not None and k != "stream_id" and not (k in ("attempt", "part") and v == 0)}


#: JSON bytes of events an entry holds at most (one event bigger than that has an entry of its own):
#: the mirror reads entries a bounded number of bytes at a time, which it can only do by counting them.
ENTRY_BYTES = 64 << 10


def emit(conn, *evs):
    """Append events to the stream, in as few entries of at most ENTRY_BYTES as they fit in (`conn` may
    be a pipeline, to join a transaction)."""
    entry, size = [], 0
    for e in evs:
        text = fastjson.dumps(e.to_dict())
        length = len(text.encode())  # bytes, as the mirror counts them: a name or a message may not be ASCII
        if entry and size + length > ENTRY_BYTES:
            _add(conn, entry)
            entry, size = [], 0
        entry.append(text)
        size += length + 1
    if entry:
        _add(conn, entry)


def _add(conn, texts):
    # No MAXLEN: an entry the mirror has not applied must never be trimmed; it trims applied ones.
    conn.xadd(EVENTS_KEY, {"events": "[" + ",".join(texts) + "]"})


def read(entry_id, fields):
    """The events of one stream entry; each gets a stream id of its own, `<entry id>/<index>`.

    Fields this version does not know (sent by a newer logjobs on some worker) are left out."""
    entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return [_event(d, f"{entry_id}/{i}") for i, d in enumerate(fastjson.loads(fields[b"events"]))]


def _event(d, stream_id):
    try:
        return Event(**d, stream_id=stream_id)
    except TypeError:
        return Event(**{k: v for k, v in d.items() if k in _FIELDS}, stream_id=stream_id)


_FIELDS = {f.name for f in dataclasses.fields(Event)} - {"stream_id"}
