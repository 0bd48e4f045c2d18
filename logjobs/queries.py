"""The read side: plain dicts from the status database (and live RQ facts) for the CLI and web
pages."""

import bisect
import datetime
import fnmatch
import heapq
import re
import time

from peewee import SQL, PostgresqlDatabase, SqliteDatabase, fn

from . import analysis, fastjson
from .defaults import FINAL_STATES, FINISHED, MOVED, QUEUES, RECOVERY_MARK, STARTED, STATES
from .models import History, Scan, db, isoformat, utc
from .queues import split_queue_name
from .rows import ranges as scan_ranges
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


def report(failed_only=False, since=None, until=None, path_glob=None):
    """One dict per pushed file, in path order, read from the database as they are taken: a report
    of a million files holds one at a time.

    With a time window (`since`/`until`: minute keys, see `minute`), each row's `levels` counts only
    the lines stamped within it, and files with no such line are left out. With `path_glob`, only
    the files whose path matches it (fnmatch: `*` spans `/`).
    """
    windowed = since is not None or until is not None
    query = Scan.reported(*[Scan.analysis] if windowed else []).order_by(Scan.path)
    if failed_only:
        query = query.where(Scan.status == "failed")
    if path_glob is not None:
        query = _below(query, path_glob)
    rows = query.iterator()
    if path_glob is not None:
        rows = (row for row in rows if fnmatch.fnmatchcase(row.path, path_glob))
    if not windowed:
        yield from map(Scan.to_dict, rows)
        return
    for row in rows:
        if row.analysis is None:
            continue
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


def _below(query, path_glob):
    """The query narrowed to the paths that start as the glob does, up to its first wildcard (the
    path index answers that; fnmatch decides the rest)."""
    prefix = re.split(r"[*?\[]", path_glob, maxsplit=1)[0]
    return query.where(Scan.path.startswith(prefix)) if prefix else query


def states(path_glob):
    """{path: status} of the files whose path matches `path_glob` (a plain path matches itself)."""
    query = _below(Scan.select(Scan.path, Scan.status), path_glob)
    return {
        path: status
        for path, status in query.tuples().iterator()
        if fnmatch.fnmatchcase(path, path_glob)
    }


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
    if path_glob is not None:
        query = _below(query, path_glob)
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
    files = {}  # {(level, template): the numbers of the files it is in}
    buckets = {}
    for number, (_, found) in enumerate(_analyses(path_glob, path)):
        if with_top:
            for message in found.top(None, since, until, levels):
                key = (message["level"], message["template"])
                if key in totals:
                    totals[key]["count"] += message["count"]
                else:
                    totals[key] = message  # the first file's example
                files.setdefault(key, set()).add(number)
        if with_timeline:
            for bucket, counts in found.minutes.items():
                if analysis.within(bucket, since, until):
                    _add(buckets.setdefault(bucket, {}), counts)
    width = min(map(len, buckets), default=analysis.WIDTHS[0])
    return (
        _fold(totals, files)[:limit] if with_top else None,
        analysis.fold(buckets.items(), width) if with_timeline else None,
    )


def _fold(totals, files):
    """Each file's templates fold among themselves (Analysis.top); this folds those of all the
    files together, so "user <*>" of one file and "user git" of another are one row. Most lines
    first; ties: the order first seen."""
    folded = analysis.fold_templates(totals)
    rows = {}
    in_files = {}
    for key, message in totals.items():
        into = folded[key]
        if into in rows:
            rows[into]["count"] += message["count"]
            in_files[into] |= files[key]
        else:
            rows[into] = {**message, "level": into[0], "template": into[1]}
            in_files[into] = set(files[key])
    ranked = sorted(rows.items(), key=lambda item: -item[1]["count"])
    return [{**message, "files": len(in_files[key])} for key, message in ranked]


def _add(into, levels):
    """Add lines per level into `into`."""
    for level, n in levels.items():
        into[level] = into.get(level, 0) + n


#: The formats of time bucket keys, by length: minutes "2024-05-01T12:03", hours, days.
_KEY_FORMAT = {16: "%Y-%m-%dT%H:%M", 13: "%Y-%m-%dT%H", 10: "%Y-%m-%d"}
#: Chart units, finest first, with how each labels its buckets.
CHART_UNITS = ("minute", "hour", "day", "week", "month", "year")
_LABEL_FORMAT = {
    "minute": "%Y-%m-%dT%H:%M",
    "hour": "%Y-%m-%dT%H",
    "day": "%Y-%m-%d",
    "week": "%Y-%m-%d",  # its Monday
    "month": "%Y-%m",
    "year": "%Y",
}
#: At most this share of a chart's lines may lie outside it, dated far from the rest (a line of
#: 1970, a clock gone wrong): a chart of everything would squeeze the rest into a bar or two.
OUTLIER_SHARE = 0.01
#: ... and only when leaving them out narrows the chart's span this many times or more.
OUTLIER_NARROWING = 10
#: The level, in a chart's series, of lines with a time and no level (analysis.NO_LEVEL).
NO_LEVEL_SERIES = "no level"


def level_chart(minutes, max_buckets=120):
    """{bucket: {level: n}} (analysis time buckets) as chart data: {"unit", "labels", "series":
    [{"level", "counts"}], "outside": {"lines", "first", "last"} or None}.

    The unit is the finest of CHART_UNITS that spans the time in at most `max_buckets` buckets
    (or is no finer than the buckets given), every bucket in between shown, one series per level.
    A few lines dated far from the rest (at most OUTLIER_SHARE of them, where leaving them out
    narrows the span OUTLIER_NARROWING times) are left out of the bars and counted in "outside",
    with the first and last of their buckets, for the page to say so."""
    dated = []
    for key, levels in minutes.items():
        moment = _bucket_time(key)
        if moment is not None:
            dated.append((moment, key, levels))
    if not dated:
        return {"unit": "minute", "labels": [], "series": [], "outside": None}
    dated.sort(key=lambda item: item[0])
    lo, hi = _without_outliers(dated)
    inside, outside = dated[lo:hi], dated[:lo] + dated[hi:]
    start, end = inside[0][0], inside[-1][0]
    finest = {16: "minute", 13: "hour", 10: "day"}[min(len(key) for _, key, _ in inside)]
    for unit in CHART_UNITS[CHART_UNITS.index(finest) :]:
        if _bucket_index(end, start, unit) < max_buckets or unit == "year":
            break
    first = _bucket_start(start, unit)
    n = _bucket_index(end, start, unit) + 1
    series: dict = {level: [0] * n for level in (*analysis.LEVELS, analysis.NO_LEVEL)}
    for moment, _, levels in inside:
        at = _bucket_index(moment, start, unit)
        for level, count in levels.items():
            if level in series:
                series[level][at] += count
    return {
        "unit": unit,
        "labels": [_label(first, i, unit) for i in range(n)],
        "series": [
            {"level": NO_LEVEL_SERIES if level == analysis.NO_LEVEL else level, "counts": counts}
            for level, counts in series.items()
            if any(counts)
        ],
        "outside": {
            "lines": sum(n for _, _, levels in outside for n in levels.values()),
            "first": outside[0][1],
            "last": outside[-1][1],
        }
        if outside
        else None,
    }


def _bucket_time(key):
    try:
        return datetime.datetime.strptime(key, _KEY_FORMAT[len(key)])
    except (KeyError, ValueError):  # not a bucket key: nothing to chart
        return None


def _without_outliers(dated):
    """[lo, hi): the shortest run of the time-sorted buckets holding all but OUTLIER_SHARE of the
    lines, if it narrows the span OUTLIER_NARROWING times; else all of them."""
    weights = [sum(levels.values()) for _, _, levels in dated]
    total = sum(weights)
    need = total - int(total * OUTLIER_SHARE)
    best = (0, len(dated))
    span = dated[-1][0] - dated[0][0]
    held, lo = 0, 0
    for hi, weight in enumerate(weights):
        held += weight
        while held - weights[lo] >= need:
            held -= weights[lo]
            lo += 1
        if held >= need and dated[hi][0] - dated[lo][0] < dated[best[1] - 1][0] - dated[best[0]][0]:
            best = (lo, hi + 1)
    narrowed = dated[best[1] - 1][0] - dated[best[0]][0]
    if best != (0, len(dated)) and narrowed * OUTLIER_NARROWING <= span:
        return best
    return 0, len(dated)


def _bucket_start(moment, unit):
    if unit == "minute":
        return moment.replace(second=0, microsecond=0)
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "week":
        return day - datetime.timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    if unit == "year":
        return day.replace(month=1, day=1)
    return day


_STEPS = {
    "minute": datetime.timedelta(minutes=1),
    "hour": datetime.timedelta(hours=1),
    "day": datetime.timedelta(days=1),
    "week": datetime.timedelta(weeks=1),
}


def _bucket_index(moment, start, unit):
    """Which bucket of a chart of `unit` starting at `start`'s bucket holds `moment`."""
    first, this = _bucket_start(start, unit), _bucket_start(moment, unit)
    if unit in _STEPS:
        return (this - first) // _STEPS[unit]
    months = (this.year - first.year) * 12 + this.month - first.month
    return months if unit == "month" else this.year - first.year


def _label(first, i, unit):
    if unit in _STEPS:
        moment = first + i * _STEPS[unit]
    elif unit == "month":
        years, month = divmod(first.month - 1 + i, 12)
        moment = first.replace(year=first.year + years, month=month + 1)
    else:
        moment = first.replace(year=first.year + i)
    return moment.strftime(_LABEL_FORMAT[unit])


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
    return dict(row.to_dict(), ranges=scan_ranges(row.part_states), history=history(row.path))


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
#: Time units the timeline may count by, with their length (s) and SQLite's strftime form of a
#: bucket.
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
    order, or most recently changed first (`order="recent"`). One query for the page, one for the
    total, whatever the page shows of each row: its counts, levels and reason are columns of it,
    and its analysis (often most of a row) is not read."""
    query = Scan.reported()
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


def level_totals():
    """Lines per level over every file's latest scan, as `report`'s totals line adds them up:
    {level: lines}.

    The database sums them from the `levels` column, a JSON object of at most six numbers per
    file (the analysis is not read): SQLite's json_each, PostgreSQL's json_each_text. That is
    still a pass over every row at each call, each one's JSON parsed by the database (about 0.1 s
    per 100,000 files with SQLite, a third of parsing them here); other databases bring the
    column here to be parsed (_level_totals_read)."""
    table = Scan._meta.table_name
    if isinstance(db.obj, SqliteDatabase):
        each, value = "json_each(s.levels)", "j.value"
    elif isinstance(db.obj, PostgresqlDatabase):
        each, value = "json_each_text(s.levels::json)", "j.value::bigint"
    else:
        return _level_totals_read()
    sql = (
        f"SELECT j.key, SUM({value}) FROM {table} AS s, {each} AS j "
        "WHERE s.levels IS NOT NULL GROUP BY j.key"
    )
    return {level: int(n) for level, n in db.execute_sql(sql)}


def _level_totals_read():
    """level_totals(), the plain way: each file's levels read and added up here."""
    totals: dict = {}
    query = Scan.select(Scan.levels).where(Scan.levels.is_null(False)).tuples()
    for (text,) in query.iterator():
        _add(totals, fastjson.loads(text))
    return totals


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
