"""The read side: plain dicts from the status database (and live RQ facts) for the CLI and web pages."""

import bisect
import datetime
import heapq
import json
import time

from peewee import SQL, SqliteDatabase, fn
from rq import Queue, Worker

from .defaults import FINAL_STATES, FINISHED, QUEUES, RECOVERY_MARK, STARTED, STATES
from .models import History, Scan, db, isoformat, utc
from .queues import split_queue_name


def status():
    """Job counts by state and by queue, and the workers that ran them, from the database."""
    by_state = dict.fromkeys(STATES, 0)
    for state, n in Scan.select(Scan.status, fn.COUNT(Scan.id)).group_by(Scan.status).tuples():
        by_state[state] = n
    by_queue, by_node = dict.fromkeys(QUEUES, 0), {}
    for queue, n in Scan.select(Scan.queue, fn.COUNT(Scan.id)).group_by(Scan.queue).tuples():
        node, priority = split_queue_name(queue)
        if priority is not None:
            by_queue[priority] += n  # a node's queue counts under its priority too
        if node is not None:
            by_node.setdefault(node, dict.fromkeys(QUEUES, 0))[priority] += n
    workers = [w for (w,) in Scan.select(Scan.worker).where(Scan.worker.is_null(False)).distinct().tuples()]
    return {"jobs": by_state, "queues": by_queue, "nodes": by_node, "workers": sorted(workers),
            "total": sum(by_state.values())}


def live(conn):
    """What Redis says right now: jobs waiting per queue, and the workers alive."""
    waiting = {name: Queue(name, connection=conn).count for name in QUEUES}
    workers = [
        {"name": w.name, "state": w.get_state(), "queues": w.queue_names(), "job_id": w.get_current_job_id()}
        for w in Worker.all(connection=conn)
    ]
    return {"waiting": waiting, "workers_alive": sorted(workers, key=lambda w: w["name"])}


def recent_failures(limit=5):
    """The files that failed last, newest first."""
    query = Scan.select().where(Scan.status == "failed").order_by(Scan.updated_at.desc()).limit(limit)
    return [{"path": r.path, "error": r.error, "attempts": r.attempts, "at": isoformat(r.updated_at)} for r in query]


def report(failed_only=False):
    """One dict per pushed file, in path order."""
    query = Scan.select().order_by(Scan.path)
    if failed_only:
        query = query.where(Scan.status == "failed")
    return [row.to_dict() for row in query]


def show(key):
    """One file's row and its job's history, found by path or job id; None if unknown."""
    row = Scan.get_or_none((Scan.path == key) | (Scan.job_id == key))
    if row is None:
        return None
    return dict(row.to_dict(), history=history(row.path))


def history(path):
    """Every state change of every scan of one file, oldest first."""
    query = History.select().where(History.path == path).order_by(History.at, History.id)
    return [
        {"job_id": h.job_id, "part": h.part, "state": h.state, "attempt": h.attempt, "worker": h.worker,
         "error": h.error, "at": isoformat(h.at), "applied": h.applied}
        for h in query
    ]


# -- the dashboard's pages and metrics ---------------------------------------------------------------

#: Upper bounds (s) of the scan duration histogram's buckets.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600)
#: Time units the timeline may count by, with their length (s) and SQLite's strftime form of a bucket.
_UNITS = (("second", 1, "%Y-%m-%d %H:%M:%S"), ("minute", 60, "%Y-%m-%d %H:%M:00"),
          ("hour", 3600, "%Y-%m-%d %H:00:00"), ("day", 86400, "%Y-%m-%d 00:00:00"))


def matches(row):
    """A file's matching lines summed over its patterns: its 'errors'."""
    return sum(row["counts"].values())


def files(queue=None, state=None, path=None, order="path", limit=50, offset=0):
    """A page of files, filtered by queue, state and a path substring, with the total; in path order,
    or most recently changed first (`order="recent"`)."""
    query = Scan.select()
    if queue:
        query = query.where(Scan.queue == queue)
    if state:
        query = query.where(Scan.status == state)
    if path:
        query = query.where(Scan.path.contains(path))
    ordering = (Scan.updated_at.desc(), Scan.path) if order == "recent" else (Scan.path,)
    rows = [row.to_dict() for row in query.order_by(*ordering).limit(limit).offset(offset)]
    for row in rows:
        row["matches"] = matches(row)
    return {"total": query.count(), "rows": rows}


def by_queue():
    """{queue: {state: files}} for every queue and state, zeros included."""
    table = {queue: dict.fromkeys(STATES, 0) for queue in QUEUES}
    for queue, state, n in Scan.select(Scan.queue, Scan.status, fn.COUNT(Scan.id)).group_by(
            Scan.queue, Scan.status).tuples():
        table.setdefault(queue, dict.fromkeys(STATES, 0))[state] = n
    return table


def top_files(limit=10):
    """The finished files with the most matching lines, most first."""
    query = Scan.select(Scan.path, Scan.queue, Scan.counts).where(
        (Scan.status == FINISHED) & Scan.counts.is_null(False)).tuples()
    rows = ({"path": path, "queue": queue, "counts": json.loads(counts)} for path, queue, counts in query.iterator())
    top = heapq.nlargest(limit, ((matches(row), row["path"], row) for row in rows))
    return [dict(row, matches=n) for n, _, row in top if n]


def throughput(windows=(60, 300, 900), now=None):
    """Files finished, and their bytes, in each trailing window (s) and overall, with rates."""
    now = utc(time.time()) if now is None else now
    result = []
    for seconds in (*windows, None):
        query = Scan.select(fn.COUNT(Scan.id), fn.SUM(Scan.bytes), fn.MIN(Scan.started_at)).where(
            Scan.status == "finished")
        if seconds:
            query = query.where(Scan.ended_at >= now - datetime.timedelta(seconds=seconds))
        n, size, first = query.tuples().get()
        size = int(size or 0)  # PostgreSQL sums to a Decimal
        span = seconds or ((now - first).total_seconds() if first else 0)
        result.append({"window": seconds, "files": n, "bytes": size,
                       "files_per_min": n * 60 / span if span else 0.0, "bytes_per_s": size / span if span else 0.0})
    return result


def timeline(max_buckets=120, min_buckets=30, now=None):
    """State changes per time bucket and state, up to now: {"unit", "labels" (UTC bucket starts), "series":
    [{"state", "counts"}]}. The unit (second, minute, hour, day) grows with the history's span."""
    first, last = History.select(fn.MIN(History.at), fn.MAX(History.at)).tuples().get()
    if first is None:
        return {"unit": "second", "labels": [], "series": [{"state": s, "counts": []} for s in STATES]}
    now = utc(time.time()) if now is None else now
    first, end = _datetime(first), max(_datetime(last), now)
    span = (end - first).total_seconds()
    unit, width, fmt = next((u for u in _UNITS if span / u[1] < max_buckets), _UNITS[-1])
    first, end = _floor(first, width), _floor(end, width)
    buckets = min(max_buckets, max(min_buckets, int((end - first).total_seconds()) // width + 1))
    start = end - datetime.timedelta(seconds=width * (buckets - 1))
    labels, step = [], start
    while step <= end:
        labels.append(step.strftime("%Y-%m-%d %H:%M:%S"))
        step += datetime.timedelta(seconds=width)
    index = {label: i for i, label in enumerate(labels)}
    series = {state: [0] * len(labels) for state in STATES}
    # Literals, not parameters: the GROUP BY must repeat the SELECT's expression exactly.
    bucket = (fn.strftime(SQL(f"'{fmt}'"), History.at) if isinstance(db.obj, SqliteDatabase)
              else fn.date_trunc(SQL(f"'{unit}'"), History.at))
    query = History.select(bucket, History.state, fn.COUNT(History.id)).where(
        (History.at >= start) & History.applied).group_by(bucket, History.state).tuples()
    for at, state, n in query:
        i = index.get(_datetime(at).strftime("%Y-%m-%d %H:%M:%S"))
        if i is not None:
            series.setdefault(state, [0] * len(labels))[i] += n
    return {"unit": unit, "labels": labels, "series": [{"state": s, "counts": c} for s, c in series.items()]}


def _datetime(value):
    """A naive UTC datetime from what a backend returned: a datetime, or SQLite's text form."""
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None)
    return datetime.datetime.fromisoformat(value)


def _floor(value, width):
    return value - datetime.timedelta(seconds=(value - value.replace(hour=0, minute=0, second=0, microsecond=0))
                                      .total_seconds() % width)


def history_totals(after_id=0, after_stream_id=None, buckets=DURATION_BUCKETS):
    """What the history rows after `after_id` add to the dashboard's counters (the table is append-only,
    so a caller can keep running totals): scans ended per queue and final state, retries, recoveries
    of abandoned scans, matching lines per pattern, and scan durations per queue bucketed by `buckets`.
    `restarted` says the row `after_id` is not the one seen before (`after_stream_id`): a new
    database, so everything is counted from its first row."""
    if after_id:
        seen = History.select(History.stream_id).where(History.id == after_id).scalar()
        restarted = seen is None or seen != after_stream_id
    else:
        restarted = False
    after_id = 0 if restarted else after_id
    totals = {"last_id": after_id, "last_stream_id": None if restarted else after_stream_id,
              "restarted": restarted, "jobs": {}, "retries": {}, "recoveries": {}, "matched": {}, "durations": {}}
    query = History.select(History.id, History.stream_id, History.queue, History.state, History.attempt,
                           History.error, History.duration, History.counts, History.applied).where(
        History.id > after_id).order_by(History.id)
    for id_, stream_id, queue, state, attempt, error, duration, counts, applied in query.tuples().iterator():
        totals["last_id"], totals["last_stream_id"] = id_, stream_id
        if not applied:
            continue
        if state in FINAL_STATES:
            per_queue = totals["jobs"].setdefault(queue, {})
            per_queue[state] = per_queue.get(state, 0) + 1
        if state == STARTED and attempt > 1:
            totals["retries"][queue] = totals["retries"].get(queue, 0) + 1
        if error and RECOVERY_MARK in error:
            totals["recoveries"][queue] = totals["recoveries"].get(queue, 0) + 1
        if state == FINISHED and counts:
            for pattern, n in json.loads(counts).items():
                totals["matched"][pattern] = totals["matched"].get(pattern, 0) + n
        if state == FINISHED and duration is not None:
            hist = totals["durations"].setdefault(queue, {"buckets": [0] * len(buckets), "sum": 0.0, "count": 0})
            i = bisect.bisect_left(buckets, duration)
            if i < len(buckets):
                hist["buckets"][i] += 1
            hist["sum"] += duration
            hist["count"] += 1
    return totals
