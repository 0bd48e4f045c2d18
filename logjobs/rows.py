"""How events change a file's row: the state machine the mirror applies, one batch at a time.

A row is the sum of its parts (byte ranges of the file, or the earlier scan a new one continues, as
part 0), each in a PartState: the last event applied to it (by `order`: events.Event.order), its
result or error, its times. A part applies an event only if it is not older than its last one, so
re-reading, late events from a partitioned worker and two mirrors all end in the same rows. The row
is then summarised from its parts: failed if one failed, finished when all have, with counts merged.
A `canceled` event (`logjobs cancel`) ends a part that has not ended; a `forgotten` one (`logjobs
forget`) drops the file's row and history.
"""

import msgspec

from . import events, fastjson, scanner, tracking, wire
from .defaults import (
    CANCELED,
    FAILED,
    FINAL_STATES,
    FINISHED,
    FORGOTTEN,
    MOVED,
    QUEUED,
    SCHEDULED,
    STARTED,
)
from .models import db, stored_utc
from .rowstore import FastRows, Row

#: The worker name of an event the reconciler made up from RQ's view (mirror.reconcile).
RECONCILE = "reconcile"
#: The order of a part that stands for an earlier scan (part 0 of a scan continuing it): above any
#: attempt's (attempt, phase), so that no late event of that scan's jobs applies over it.
BASE_ORDER = (1 << 62, 9)


class PartState(msgspec.Struct, omit_defaults=True):
    """One part of a file's scan, as its row keeps it (the JSON of Scan.part_states)."""

    job_id: str
    state: str
    attempt: int
    order: tuple[int, int]
    at: float
    worker: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    result: dict | None = None
    error: str | None = None


_PARTS = list[PartState | None]


def ranges(part_states: str) -> int:
    """How many byte ranges a row's latest scan reads: its parts, but for the earlier scan a grown
    file's scan continues (its part 0)."""
    return sum(
        1 for p in wire.decode(part_states, _PARTS) if p is None or tuple(p.order) != BASE_ORDER
    )


def apply(batch, rows=None):
    """Apply events to the rows of the files they concern; call inside a transaction. `rows` reads
    and writes them (rowstore.FastRows by default).

    Returns what Redis must learn once this commits: {path: wire.Record of its finished scan, or
    None when it has none to continue} (see tracking).
    """
    rows = rows or _FAST
    for event in batch:  # read from the stream, these are shapes; the rows keep plain JSON
        event.result, event.identity = wire.plain(event.result), wire.plain(event.identity)
    found = rows.load({e.path for e in batch} | {e.moved_from for e in batch if e.moved_from})
    applying = _Batch(
        found,
        {path: wire.decode(row.part_states, _PARTS) for path, row in found.items()},
        stored_utc(db.obj),
    )
    for event in batch:
        applying.apply(event)
    rows.delete(applying.forgotten)
    for path in applying.changed:
        row = applying.rows[path]
        if row.status != MOVED:
            _summarise(row, applying.parts[path], applying.stamp)
            if row.status == FINISHED:
                applying.scanned[path] = _record(row, applying.parts[path])
    rows.save([applying.rows[p] for p in applying.changed])
    rows.add_history(applying.history)
    return applying.scanned


_FAST = FastRows()


class _Batch:
    """The rows and parts of one batch of events, as they change."""

    def __init__(self, rows, parts, stamp):
        self.rows = rows
        self.parts = parts
        self.stamp = stamp
        self.changed = set()
        self.history = []
        self.scanned = {}
        self.forgotten = set()  # paths whose rows and history go, before this batch's are saved

    def apply(self, event):
        if event.state == FORGOTTEN:
            self._forget(event.path)
            return
        if event.is_push and event.part and event.part >= len(self.parts.get(event.path, ())):
            # a later part of a push whose first part this database never had (not sent by logjobs)
            return
        if event.is_push:
            part = self._pushed(event)
            applied = True
            if part is None:  # part 0 of a continued scan: its history entry is written
                return
        elif event.path not in self.rows:
            return  # of a file this database never saw pushed
        else:
            states = self.parts[event.path]
            part = states[event.part] if event.part < len(states) else None
            # Stale (a superseded scan, an older attempt): recorded, but it changes nothing.
            applied = part is not None and part.job_id == event.job_id and _newer(event, part)
            if applied:
                _update(part, event)
                if event.identity:  # the file the scan read, which is what its record must describe
                    self.rows[event.path].identity = fastjson.dumps(event.identity)
        if applied:
            self.changed.add(event.path)
        finished = applied and event.state == FINISHED and event.result is not None
        self.history.append(
            _history(event, self.rows[event.path], part, finished, applied, self.stamp)
        )

    def _forget(self, path):
        if path not in self.rows:
            return
        self.forgotten.add(path)
        del self.rows[path], self.parts[path]
        self.changed.discard(path)
        self.history = [entry for entry in self.history if entry["path"] != path]
        self.scanned[path] = None  # a later push scans the file whole

    def _pushed(self, event):
        """Apply a push's event; its part, or None when it was part 0 of a continued scan (done)."""
        path = event.path
        if event.part == 0:  # a new scan of the file: its row starts over
            base = self._base(event) if event.base else None
            if path in self.rows and self.rows[path].status == FINISHED:
                # The row no longer holds the scan its record describes, which a push would continue
                # (under this name or, taken for moved, another): this scan's record replaces it
                # once it finishes; should it fail, the next push scans the file whole.
                self.scanned[path] = None
            self.rows[path] = _reset(self.rows.get(path) or Row(path), event, self.stamp)
            self.parts[path] = [None] * event.parts
            if base is not None:
                self.parts[path][0] = base
                self.changed.add(path)
                if base.state == FAILED:  # why the scan cannot continue; else nothing happened
                    entry = _history(event, self.rows[path], base, False, True, self.stamp)
                    self.history.append({**entry, "state": FAILED, "error": base.error})
                return None
        part = self.parts[path][event.part] = PartState(
            event.job_id, QUEUED, 0, event.order, event.at
        )
        return part

    def _base(self, event):
        """Part 0 of a scan continuing the finished scan `event.base` of the file (under its old
        name, when it moved): that scan's whole result. When the row no longer holds that scan, the
        part fails, and the record goes, so that the next push scans the file whole."""
        source = event.moved_from or event.path
        row = self.rows.get(source)
        # A row this batch made (a file moved there, then on again: two rotations the mirror applies
        # at once) is summarised only at the batch's end: its parts tell whether it is finished.
        finished = row is not None and (
            row.status == FINISHED
            or source in self.changed
            and all(p is not None and p.state == FINISHED for p in self.parts[source])
        )
        if row is None or row.job_id != event.base or not finished:
            self.scanned[event.path] = self.scanned[source] = None
            return PartState(
                event.base,
                FAILED,
                0,
                BASE_ORDER,
                event.at,
                ended_at=event.at,
                error=f"the scan this one continues (of {source}) is no longer in the database: "
                "push the file again",
            )
        result = scanner.merge_dicts([p.result for p in self.parts[source] if p and p.result])
        if event.since is not None and event.since < result["bytes"]:
            result = scanner.without_partial(result)  # the scan reads its last line again
        part = PartState(
            event.base, FINISHED, 0, BASE_ORDER, event.at, ended_at=event.at, result=result
        )
        if event.moved_from:
            _moved_away(row, event.path, self.stamp(event.at))
            self.parts[source] = []
            self.changed.add(source)
            self.scanned[source] = None
        return part


def _moved_away(row, to, at):
    """The row of a name whose file (and counts) went to `to`."""
    row.status = MOVED
    row.moved_to = to
    row.part_states = "[]"
    row.updated_at = at
    row.counts = row.lines = row.bytes = row.scanned = row.error = row.levels = row.analysis = None


def _history(event, row, part, finished, applied, stamp):
    started = part.started_at if finished and part is not None else None
    return {
        "stream_id": event.stream_id,
        "job_id": event.job_id,
        "path": event.path,
        "part": event.part,
        "queue": row.queue,
        "state": event.state,
        "attempt": event.attempt,
        "worker": event.worker,
        "error": event.error,
        "at": stamp(event.at),
        "duration": event.at - started if started is not None else None,
        "counts": fastjson.dumps(event.result["counts"]) if finished else None,
        "applied": applied,
    }


def _record(row, parts):
    """What push needs to know of a finished scan to continue it (see tracking.decide)."""
    if not row.identity:
        return None
    ends = [p.result for p in parts if p is not None and p.result and p.result["bytes"]]
    partial = ends[-1].get("partial") if ends and row.tail else None
    return tracking.record_of(
        wire.decode(row.identity, wire.Identity),
        job_id=row.job_id,
        end=row.bytes,
        tail=bool(row.tail),
        partial=partial["bytes"] if partial else 0,
        partial_counts=partial["counts"] if partial else {},
        patterns=fastjson.loads(row.patterns),
        analysed=row.analysis is not None,
        counts=fastjson.loads(row.counts),
        lines=row.lines,
        ignore_case=bool(row.ignore_case),
    )


def _newer(event, part):
    current = tuple(part.order)
    if event.state == CANCELED:  # takes back what has not ended; what ended stays as it ended
        return part.state not in FINAL_STATES
    if part.state == CANCELED and event.state != FINISHED:
        return event.order > current  # a stopped run's end (RQ's own failure, say) is the cancel's
    # A reconciler's guess yields to any event the job itself sent for the same step.
    return event.order > current if event.worker == RECONCILE else event.order >= current


def _reset(row, event, stamp):
    """The row of a file whose new scan was just pushed: queued, nothing counted yet."""
    fresh = Row(
        row.path,
        job_id=event.job_id,
        queue=event.queue,
        status=QUEUED,
        parts=event.parts,
        patterns=fastjson.dumps(event.patterns or []),
        ignore_case=event.ignore_case,
        identity=fastjson.dumps(event.identity) if event.identity else None,
        enqueued_at=stamp(event.at),
        updated_at=stamp(event.at),
    )
    for name in row.__slots__:
        setattr(row, name, getattr(fresh, name))
    return row


def _update(part, event):
    part.state, part.attempt, part.order, part.at = (
        event.state,
        max(part.attempt, event.attempt),
        event.order,
        event.at,
    )
    if event.worker and event.worker != RECONCILE:
        part.worker = event.worker
    if event.state == STARTED:
        part.started_at = event.at  # of the latest attempt
    elif (
        event.started_at is not None
    ):  # an outcome whose `started` was not sent (see jobs.Reporter)
        part.started_at = event.started_at
    if event.state == FINISHED:
        part.result = event.result
        part.error = None
        part.ended_at = event.at
    elif event.state != STARTED:
        part.error = event.error
        if event.state in (FAILED, CANCELED):
            part.ended_at = event.at


def _summarise(row, parts, stamp):
    """The file's row from its parts: failed if one failed, finished when all have, started while
    one runs, else waiting (scheduled if a part waits for its retry, else queued). Parts already
    finished (another range, or the earlier scan a grown file's new one continues) do not make it
    `started`: that says a worker is on it."""
    row.part_states = wire.encode(parts).decode()
    if all(p is not None and tuple(p.order) == events.PUSH_ORDER for p in parts):
        # every part as its push left it: so is the row (see _reset), and a push is most events
        return
    known = [p for p in parts if p is not None]
    row.status = _status({p.state for p in known}, len(known) == row.parts)
    row.attempts = max((p.attempt for p in known), default=0)
    latest = max(known, key=lambda p: p.at)
    row.worker = latest.worker or row.worker
    row.updated_at = stamp(latest.at)
    row.error = next((p.error for p in known if p.state == FAILED), None) or (
        latest.error if row.status != FINISHED else None
    )
    starts = [p.started_at for p in known if p.started_at]
    row.started_at = stamp(min(starts)) if starts else None
    ends = [p.ended_at for p in known if p.ended_at]
    row.ended_at = stamp(max(ends)) if row.status in FINAL_STATES and ends else None
    if row.status == FINISHED:
        _counted(row, known)


def _status(states, all_known):
    if FAILED in states:
        return FAILED
    if CANCELED in states:
        return CANCELED
    if states == {FINISHED} and all_known:
        return FINISHED
    if STARTED in states:
        return STARTED
    return SCHEDULED if SCHEDULED in states else QUEUED


def _counted(row, parts):
    """A finished row's counts, lines, levels and analysis: its parts' results merged."""
    merged = scanner.merge_dicts([p.result for p in parts if p.result])
    analysis = merged.get("analysis")
    row.counts = fastjson.dumps(merged["counts"])
    row.lines, row.bytes = merged["lines"], merged["bytes"]
    row.compression, row.tail = merged.get("compression"), merged.get("tail", False)
    row.levels = fastjson.dumps(analysis["levels"]) if analysis else None
    row.format = analysis.get("format") if analysis else None
    row.analysis = fastjson.dumps(analysis) if analysis else None
    # What this scan read: all of it, or (continuing an earlier scan, as part 0) what was new.
    row.scanned = sum(p.result["bytes"] for p in parts if p.result and tuple(p.order) != BASE_ORDER)
