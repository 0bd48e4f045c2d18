"""State changes of file scans, carried from wherever they happen to the mirror through a Redis stream.

Workers on other hosts never open the status database: they append events to one stream, which
outlives the mirror being down, and the mirror applies them in order. An event concerns one part of
one file (a file is scanned whole, as part 0 of 1, or split into byte ranges) as run by one job, and
carries the job's attempt number, so an event that arrives late (from a worker cut off by a
partition) can be told apart from a newer one: see `Event.order`.
"""

import dataclasses
import json
import os
import time

from .defaults import EVENTS_KEY, FAILED, FINISHED, QUEUED, SCHEDULED, STARTED

#: Within one attempt: its start, then a retry wait, then its final outcome.
_PHASE = {STARTED: 1, QUEUED: 2, SCHEDULED: 2, FINISHED: 3, FAILED: 3}


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
    worker: str | None = None
    error: str | None = None
    result: dict | None = None        # the scan result, on `finished`
    stream_id: str | None = None      # set when read back from the stream

    @property
    def is_push(self):
        return self.parts is not None

    @property
    def order(self):
        """Events of a part apply in this order; one ordered before the part's last one is stale."""
        if self.is_push:
            return (0, 0)
        return (self.attempt, _PHASE[self.state])

    def to_fields(self):
        # Bytes, so a file name that is not UTF-8 survives any client's encoding settings.
        fields = {"job_id": self.job_id, "path": os.fsencode(self.path), "state": self.state, "attempt": self.attempt,
                  "part": self.part, "at": repr(self.at)}
        for name in ("parts", "queue", "worker", "error"):
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        for name in ("patterns", "result"):
            value = getattr(self, name)
            if value is not None:
                fields[name] = json.dumps(value)
        return fields

    @classmethod
    def from_fields(cls, stream_id, fields):
        f = {k.decode(): v.decode("utf-8", "surrogateescape") for k, v in fields.items()}
        return cls(
            job_id=f["job_id"],
            path=f["path"],
            state=f["state"],
            attempt=int(f.get("attempt", 0)),
            part=int(f.get("part", 0)),
            at=float(f.get("at", 0)),
            parts=int(f["parts"]) if "parts" in f else None,
            queue=f.get("queue"),
            patterns=json.loads(f["patterns"]) if "patterns" in f else None,
            worker=f.get("worker"),
            error=f.get("error"),
            result=json.loads(f["result"]) if "result" in f else None,
            stream_id=stream_id.decode() if isinstance(stream_id, bytes) else stream_id,
        )


def emit(conn, event):
    """Append `event` to the stream (`conn` may be a pipeline, to make it part of a transaction)."""
    # No MAXLEN: an entry the mirror has not applied must never be trimmed; it trims applied ones.
    return conn.xadd(EVENTS_KEY, event.to_fields())
