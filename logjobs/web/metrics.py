"""`/metrics`: Prometheus text read from the status database at scrape time.

Counters come from the append-only history table, so they only grow: each scrape reads the rows
added since the last one and adds them to running totals (a different database starts them over,
which Prometheus reads as a counter reset). Gauges come from the files' current rows: files by
queue and state, and lines per level (summed by the database over every file's `levels` JSON: see
queries.level_totals for its cost).
"""

import threading

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .. import queries
from ..defaults import FINAL_STATES, LEVELS, QUEUES
from .database import serve_from_database

blueprint = Blueprint("metrics", __name__)
serve_from_database(blueprint)


class HistoryCollector:
    """Turns queries.history_totals, accumulated across scrapes, into Prometheus metric families."""

    def __init__(self, buckets=queries.DURATION_BUCKETS):
        self.buckets = buckets
        self.totals = _empty()
        self._lock = threading.Lock()

    def collect(self):
        with self._lock:
            fresh = queries.history_totals(
                self.totals["last_id"], self.totals["last_stream_id"], self.buckets
            )
            if fresh["restarted"]:
                self.totals = _empty()
            _add(self.totals, fresh)
            families = list(self._families(self.totals))
        return families + [_files_gauge(), _levels_gauge()]

    def _families(self, totals):
        jobs = CounterMetricFamily(
            "logjobs_jobs",
            "Scans (a file, or a part of a split file) that ended, by queue and final state.",
            labels=["queue", "state"],
        )
        for queue in _queues(totals["jobs"]):
            for state in FINAL_STATES:
                jobs.add_metric([queue, state], totals["jobs"].get(queue, {}).get(state, 0))
        yield jobs
        for name, doc in (
            ("retries", "Job attempts after the first that started, by queue."),
            ("recoveries", "Scans recovered from a worker that died or was cut off, by queue."),
        ):
            family = CounterMetricFamily(f"logjobs_{name}", doc, labels=["queue"])
            for queue in _queues(totals[name]):
                family.add_metric([queue], totals[name].get(queue, 0))
            yield family
        matched = CounterMetricFamily(
            "logjobs_matched_lines",
            "Matching lines counted by finished scans, by pattern.",
            labels=["pattern"],
        )
        for pattern, n in sorted(totals["matched"].items()):
            matched.add_metric([pattern], n)
        yield matched
        duration = HistogramMetricFamily(
            "logjobs_scan_duration_seconds",
            "How long finished scans took, by queue.",
            labels=["queue"],
        )
        for queue in _queues(totals["durations"]):
            hist = totals["durations"].get(queue) or _no_durations(self.buckets)
            cumulative, running = [], 0
            for bound, n in zip(self.buckets, hist["buckets"]):
                running += n
                cumulative.append((_le(bound), running))
            duration.add_metric(
                [queue], cumulative + [("+Inf", hist["count"])], sum_value=hist["sum"]
            )
        yield duration


def _files_gauge():
    gauge = GaugeMetricFamily(
        "logjobs_files", "Pushed files by queue and current state.", labels=["queue", "state"]
    )
    for queue, states in queries.by_queue().items():
        for state, n in states.items():
            gauge.add_metric([queue, state], n)
    return gauge


def _levels_gauge():
    """Lines per level in the files' latest scans: a gauge, not a counter, since a file pushed
    again replaces its lines (a log rotated, truncated or rewritten has fewer)."""
    gauge = GaugeMetricFamily(
        "logjobs_lines_by_level",
        "Lines per level in the files' latest scans, as logjobs report totals them.",
        labels=["level"],
    )
    totals = queries.level_totals()
    for level in list(LEVELS) + sorted(set(totals) - set(LEVELS)):
        gauge.add_metric([level], totals.get(level, 0))
    return gauge


def _queues(by_queue):
    """The standard queues (so their series exist from the start), then any other seen in the
    history."""
    return list(QUEUES) + sorted(set(by_queue) - set(QUEUES))


def _le(bound):
    return str(float(bound))


def _empty():
    return {
        "last_id": 0,
        "last_stream_id": None,
        "jobs": {},
        "retries": {},
        "recoveries": {},
        "matched": {},
        "durations": {},
    }


def _no_durations(buckets):
    return {"buckets": [0] * len(buckets), "sum": 0.0, "count": 0}


def _add(totals, fresh):
    totals["last_id"], totals["last_stream_id"] = fresh["last_id"], fresh["last_stream_id"]
    for name in ("retries", "recoveries", "matched"):
        for key, n in fresh[name].items():
            totals[name][key] = totals[name].get(key, 0) + n
    for queue, states in fresh["jobs"].items():
        mine = totals["jobs"].setdefault(queue, {})
        for state, n in states.items():
            mine[state] = mine.get(state, 0) + n
    for queue, hist in fresh["durations"].items():
        mine = totals["durations"].setdefault(queue, _no_durations(hist["buckets"]))  # same bounds
        mine["buckets"] = [a + b for a, b in zip(mine["buckets"], hist["buckets"])]
        mine["sum"] += hist["sum"]
        mine["count"] += hist["count"]


@blueprint.route("/metrics")
def metrics():
    return Response(
        generate_latest(current_app.extensions["logjobs"].registry),
        content_type=CONTENT_TYPE_LATEST,
    )
