"""The read side: plain dicts from the status database (and live RQ facts) for the CLI and web
pages."""

import bisect
import datetime
import fnmatch
import heapq
import re
import time

from peewee import SQL, SqliteDatabase, fn

from . import analysis, fastjson
from .defaults import FINAL_STATES, FINISHED, MOVED, QUEUES, RECOVERY_MARK, STARTED, STATES
from .models import History, Scan, db, isoformat, utc
from .queues import split_queue_name
from .rqsafe import Queue, Worker


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
    workers = [
        w for (w,) in Scan.select(Scan.worker).where(Scan.worker.is_null(False)).distinct().tuples()
    ]
    return {
        "jobs": by_state,
        "queues": by_queue,
        "nodes": by_node,
        "workers": sorted(workers),
        "total": sum(by_state.values()),
    }


def live(conn):
    """What Redis says right now: jobs waiting per queue (a node's too, when it has any), and the
    workers alive."""
    waiting = {name: Queue(name, connection=conn).count for name in QUEUES}
    for queue in sorted(Queue.all(connection=conn), key=lambda q: q.name):
        if split_queue_name(queue.name)[0] is not None and (count := queue.count):  # one LLEN each
            waiting[queue.name] = count
    workers = [
        {
            "name": w.name,
            "state": w.get_state(),
            "queues": w.queue_names(),
            "job_id": w.get_current_job_id(),
        }
        for w in Worker.all(connection=conn)
    ]
    return {"waiting": waiting, "workers_alive": sorted(workers, key=lambda w: w["name"])}


def recent_failures(limit=5):
    """The files that failed last, newest first."""
    query = (
        Scan.select().where(Scan.status == "failed").order_by(Scan.updated_at.desc()).limit(limit)
    )
    return [
        {"path": r.path, "error": r.error, "attempts": r.attempts, "at": isoformat(r.updated_at)}
        for r in query
    ]


def report(failed_only=False, since=None, until=None):
    """One dict per pushed file, in path order, read from the database as they are taken: a report
    of a million files holds one at a time.

    With a time window (`since`/`until`: minute keys, see `minute`), each row's `levels` counts only
    the lines stamped within it, and files with no such line are left out.
    """
    windowed = since is not None or until is not None
    query = Scan.reported(*[Scan.analysis] if windowed else []).order_by(Scan.path)
    if failed_only:
        query = query.where(Scan.status == "failed")
    if not windowed:
        yield from map(Scan.to_dict, query.iterator())
        return
    for row in query.where(Scan.analysis.is_null(False)).iterator():
        levels = _window(
            analysis.Analysis.from_dict(fastjson.loads(row.analysis)).minutes, since, until
        )
        if levels:
            yield {**row.to_dict(), "levels": levels}


def _window(minutes, since, until):
    """Lines per level, over the minutes in [since, until)."""
    total = {}
    for minute, levels in minutes.items():
        if analysis.within(minute, since, until):
            _add(total, levels)
    return total


def _analyses(path_glob=None, path=None):
    """(path, Analysis) of every file with one, in path order: all, those whose path matches the
    glob, or the one at `path`."""
    query = (
        Scan.select(Scan.path, Scan.analysis)
        .where(Scan.analysis.is_null(False))
        .order_by(Scan.path)
    )
    if path is not None:
        query = query.where(Scan.path == path)
    for found, text in query.tuples().iterator():
        if path_glob is None or fnmatch.fnmatchcase(found, path_glob):
            yield found, analysis.Analysis.from_dict(fastjson.loads(text))


def top(path_glob=None, since=None, until=None, levels=None, limit=20, path=None):
    """The most frequent message templates over the files whose path matches `path_glob` (or the
    file at `path`), with the number of files each appears in; counts within [since, until) if
    given.

    Each file's counts are taken in its own time buckets, then added up: not Analysis.merge, which
    keeps one file's first MAX_TEMPLATES templates, in buckets that a long span coarsens to hours.
    """
    return messages(path_glob, since, until, levels, limit, path, with_timeline=False)[0]


def level_timeline(path_glob=None, since=None, until=None, path=None):
    """Lines per minute and level over the files whose path matches `path_glob` (or the file at
    `path`): {minute: {level: n}}, in time order. Where a file's analysis has hours or days (a log
    spanning months: see analysis.WIDTHS), every bucket is one of those."""
    return messages(path_glob, since, until, path=path, with_top=False)[1]


def messages(
    path_glob=None,
    since=None,
    until=None,
    levels=None,
    limit=20,
    path=None,
    with_top=True,
    with_timeline=True,
):
    """(top(...), level_timeline(...)) of the same files, each file's analysis read once (the JSON
    of 100,000 files' analyses takes seconds); the one not asked for is None."""
    totals = {}
    files = {}
    buckets = {}
    for _, found in _analyses(path_glob, path):
        if with_top:
            for message in found.top(None, since, until, levels):
                key = (message["level"], message["template"])
                if key in totals:
                    totals[key]["count"] += message["count"]
                else:
                    totals[key] = message  # the first file's example
                files[key] = files.get(key, 0) + 1
        if with_timeline:
            for bucket, counts in found.minutes.items():
                if analysis.within(bucket, since, until):
                    _add(buckets.setdefault(bucket, {}), counts)
    ranked = sorted(
        totals.items(), key=lambda item: -item[1]["count"]
    )  # ties: the order first seen
    width = min(map(len, buckets), default=analysis.WIDTHS[0])
    return (
        [{**message, "files": files[key]} for key, message in ranked[:limit]] if with_top else None,
        analysis.fold(buckets.items(), width) if with_timeline else None,
    )


def _add(into, levels):
    """Add lines per level into `into`."""
    for level, n in levels.items():
        into[level] = into.get(level, 0) + n


# : Chart buckets by unit: how much of a minute key ("YYYY-MM-DDTHH:MM") names the bucket, its
# length.
_BUCKETS = (
    ("minute", 16, datetime.timedelta(minutes=1)),
    ("hour", 13, datetime.timedelta(hours=1)),
    ("day", 10, datetime.timedelta(days=1)),
)
_BUCKET_FORMAT = {16: "%Y-%m-%dT%H:%M", 13: "%Y-%m-%dT%H", 10: "%Y-%m-%d"}


def level_chart(minutes, max_buckets=120):
    """{minute: {level: n}} as chart data: the finest unit (minute, hour, day) that spans the time
    in at most `max_buckets` buckets (days beyond that), every bucket in between shown, one series
    per level. Buckets already coarser than minutes (hours, days) are charted in their unit or a
    coarser one."""
    if not minutes:
        return {"unit": "minute", "labels": [], "series": []}
    first, last = min(minutes), max(minutes)
    finest = min(map(len, minutes))
    for unit, width, step in _BUCKETS:
        if width > finest:
            continue
        start = datetime.datetime.strptime(first[:width], _BUCKET_FORMAT[width])
        end = datetime.datetime.strptime(last[:width], _BUCKET_FORMAT[width])
        if (end - start) / step < max_buckets or unit == "day":
            break
    n = int((end - start) / step) + 1
    labels = [(start + i * step).strftime(_BUCKET_FORMAT[width]) for i in range(n)]
    index = {label: i for i, label in enumerate(labels)}
    series = {level: [0] * n for level in analysis.LEVELS}
    for minute_key, levels in minutes.items():
        for level, count in levels.items():
            series[level][index[minute_key[:width]]] += count
    return {
        "unit": unit,
        "labels": labels,
        "series": [{"level": lv, "counts": c} for lv, c in series.items() if any(c)],
    }


#: A relative time: a number and a unit (s, m, h, d, w) back from now, e.g. `90m` or `2d`.
_AGO = re.compile(r"(\d+)\s*([smhdw])")
_SPAN_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def minute(text, now=None):
    """The minute key ("YYYY-MM-DDTHH:MM", UTC) of a time given as ISO 8601 (a date, or a date and
    time, with or without a zone: none means UTC) or as a span back from now (`30m`, `6h`, `2d`).
    Raises ValueError with a message fit for the user."""
    text = text.strip()
    ago = _AGO.fullmatch(text)
    if ago:
        now = time.time() if now is None else now
        when = datetime.datetime.fromtimestamp(
            now - int(ago[1]) * _SPAN_SECONDS[ago[2]], datetime.UTC
        )
    else:
        try:
            when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"bad time {text!r}: give ISO 8601 (2024-05-01, 2024-05-01T12:30, "
                "2024-05-01T12:30+02:00) or a span back from now (30m, 6h, 2d)"
            ) from None
        if when.tzinfo is not None:
            when = when.astimezone(datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M")


def show(path, job_id=None):
    """One file's row and its job's history, found by its path, else by `job_id`; None if
    unknown."""
    row = Scan.get_or_none(Scan.path == path) or (
        job_id and Scan.get_or_none(Scan.job_id == job_id)
    )
    if row is None:
        return None
    return dict(row.to_dict(), history=history(row.path))


def history(path):
    """Every state change of every scan of one file, oldest first."""
    query = History.select().where(History.path == path).order_by(History.at, History.id)
    return [
        {
            "job_id": h.job_id,
            "part": h.part,
            "state": h.state,
            "attempt": h.attempt,
            "worker": h.worker,
            "error": h.error,
            "at": isoformat(h.at),
            "applied": h.applied,
        }
        for h in query
    ]


# -- the dashboard's pages and metrics ---------------------------------------------------------

#: Upper bounds (s) of the scan duration histogram's buckets.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600)
# : Time units the timeline may count by, with their length (s) and SQLite's strftime form of a
# bucket.
_UNITS = (
    ("second", 1, "%Y-%m-%d %H:%M:%S"),
    ("minute", 60, "%Y-%m-%d %H:%M:00"),
    ("hour", 3600, "%Y-%m-%d %H:00:00"),
    ("day", 86400, "%Y-%m-%d 00:00:00"),
)


def matches(row):
    """A file's matching lines summed over its patterns: its 'errors'."""
    return sum(row["counts"].values())


def files(queue=None, state=None, path=None, order="path", limit=50, offset=0):
    """A page of files, filtered by queue, state and a path substring, with the total; in path
    order, or most recently changed first (`order="recent"`)."""
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
    for queue, state, n in (
        Scan.select(Scan.queue, Scan.status, fn.COUNT(Scan.id))
        .group_by(Scan.queue, Scan.status)
        .tuples()
    ):
        table.setdefault(queue, dict.fromkeys(STATES, 0))[state] = n
    return table


def top_files(limit=10):
    """The finished files with the most matching lines, most first."""
    query = (
        Scan.select(Scan.path, Scan.queue, Scan.counts)
        .where((Scan.status == FINISHED) & Scan.counts.is_null(False))
        .tuples()
    )
    rows = (
        {"path": path, "queue": queue, "counts": fastjson.loads(counts)}
        for path, queue, counts in query.iterator()
    )
    top = heapq.nlargest(limit, ((matches(row), row["path"], row) for row in rows))
    return [dict(row, matches=n) for n, _, row in top if n]


def throughput(windows=(60, 300, 900), now=None):
    """Files finished, and their bytes, in each trailing window (s) and overall, with rates."""
    now = utc(time.time()) if now is None else now
    result = []
    for seconds in (*windows, None):
        query = Scan.select(fn.COUNT(Scan.id), fn.SUM(Scan.bytes), fn.MIN(Scan.started_at)).where(
            Scan.status == "finished"
        )
        if seconds:
            query = query.where(Scan.ended_at >= now - datetime.timedelta(seconds=seconds))
        n, size, first = query.tuples().get()
        size = int(size or 0)  # PostgreSQL sums to a Decimal
        span = seconds or ((now - first).total_seconds() if first else 0)
        result.append(
            {
                "window": seconds,
                "files": n,
                "bytes": size,
                "files_per_min": n * 60 / span if span else 0.0,
                "bytes_per_s": size / span if span else 0.0,
            }
        )
    return result


#: The states a scan's history records (a `moved` row is a name left behind, not a state change).
CHANGES = tuple(s for s in STATES if s != MOVED)


def timeline(max_buckets=120, min_buckets=30, now=None):
    """State changes per time bucket and state, up to now: {"unit", "labels" (UTC bucket starts),
    "series": [{"state", "counts"}]}. The unit (second, minute, hour, day) grows with the history's
    span."""
    first, last = History.select(fn.MIN(History.at), fn.MAX(History.at)).tuples().get()
    if first is None:
        return {
            "unit": "second",
            "labels": [],
            "series": [{"state": s, "counts": []} for s in CHANGES],
        }
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
    series = {state: [0] * len(labels) for state in CHANGES}
    # Literals, not parameters: the GROUP BY must repeat the SELECT's expression exactly.
    bucket = (
        fn.strftime(SQL(f"'{fmt}'"), History.at)
        if isinstance(db.obj, SqliteDatabase)
        else fn.date_trunc(SQL(f"'{unit}'"), History.at)
    )
    query = (
        History.select(bucket, History.state, fn.COUNT(History.id))
        .where((History.at >= start) & History.applied)
        .group_by(bucket, History.state)
        .tuples()
    )
    for at, state, n in query:
        i = index.get(_datetime(at).strftime("%Y-%m-%d %H:%M:%S"))
        if i is not None:
            series.setdefault(state, [0] * len(labels))[i] += n
    return {
        "unit": unit,
        "labels": labels,
        "series": [{"state": s, "counts": c} for s, c in series.items()],
    }


def _datetime(value):
    """A naive UTC datetime from what a backend returned: a datetime, or SQLite's text form."""
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None)
    return datetime.datetime.fromisoformat(value)


def _floor(value, width):
    return value - datetime.timedelta(
        seconds=(value - value.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds()
        % width
    )


def history_totals(after_id=0, after_stream_id=None, buckets=DURATION_BUCKETS):
    """What the history rows after `after_id` add to the dashboard's counters (the table is
    append-only, so a caller can keep running totals): scans ended per queue and final state,
    retries, recoveries of abandoned scans, matching lines per pattern, and scan durations per queue
    bucketed by `buckets`. `restarted` says the row `after_id` is not the one seen before
    (`after_stream_id`): a new database, so everything is counted from its first row."""
    if after_id:
        seen = History.select(History.stream_id).where(History.id == after_id).scalar()
        restarted = seen is None or seen != after_stream_id
    else:
        restarted = False
    after_id = 0 if restarted else after_id
    totals = {
        "last_id": after_id,
        "last_stream_id": None if restarted else after_stream_id,
        "restarted": restarted,
        "jobs": {},
        "retries": {},
        "recoveries": {},
        "matched": {},
        "durations": {},
    }
    query = (
        History.select(
            History.id,
            History.stream_id,
            History.queue,
            History.state,
            History.attempt,
            History.error,
            History.duration,
            History.counts,
            History.applied,
        )
        .where(History.id > after_id)
        .order_by(History.id)
    )
    for (
        id_,
        stream_id,
        queue,
        state,
        attempt,
        error,
        duration,
        counts,
        applied,
    ) in query.tuples().iterator():
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
            for pattern, n in fastjson.loads(counts).items():
                totals["matched"][pattern] = totals["matched"].get(pattern, 0) + n
        if state == FINISHED and duration is not None:
            hist = totals["durations"].setdefault(
                queue, {"buckets": [0] * len(buckets), "sum": 0.0, "count": 0}
            )
            i = bisect.bisect_left(buckets, duration)
            if i < len(buckets):
                hist["buckets"][i] += 1
            hist["sum"] += duration
            hist["count"] += 1
    return totals
