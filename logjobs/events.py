"""State changes of scan jobs, carried from wherever they happen to the mirror through a Redis stream.

Workers on other hosts never open the status database: they append events to one stream, which
outlives the mirror being down, and the mirror applies them in order. Each event carries the job's
attempt number, so an event that arrives late (from a worker cut off by a partition) can be told apart
from a newer one: see `Event.order`.
"""

import dataclasses
import json
import time

from .defaults import EVENTS_KEY, FAILED, FINISHED, QUEUED, SCHEDULED, STARTED

#: Within one attempt: its start, then a retry wait, then its final outcome.
_PHASE = {STARTED: 1, QUEUED: 2, SCHEDULED: 2, FINISHED: 3, FAILED: 3}


@dataclasses.dataclass
class Event:
    """One state change of one job. `state` is the state the job is in after it."""

    job_id: str
    state: str
    attempt: int = 0
    at: float = dataclasses.field(default_factory=time.time)
    path: str | None = None           # only on the push's event
    queue: str | None = None          # only on the push's event
    patterns: list | None = None      # only on the push's event
    worker: str | None = None
    error: str | None = None
    result: dict | None = None        # the scan result, on `finished`
    stream_id: str | None = None      # set when read back from the stream

    @property
    def order(self):
        """Events of a job apply in this order; an event ordered before the row's last one is stale."""
        if self.attempt == 0 and self.state == QUEUED:
            return (0, 0)  # the push
        return (self.attempt, _PHASE[self.state])

    def to_fields(self):
        fields = {"job_id": self.job_id, "state": self.state, "attempt": self.attempt, "at": repr(self.at)}
        for name in ("path", "queue", "worker", "error"):
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
            state=f["state"],
            attempt=int(f.get("attempt", 0)),
            at=float(f.get("at", 0)),
            path=f.get("path"),
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
