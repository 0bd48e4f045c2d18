"""The dashboard: pages and metrics against a seeded database, auth and CSRF on every mutating
route, and a real headless Chromium following a live pipeline (redis-server, `rq worker`, `logjobs
mirror`, `logjobs dashboard`)."""

import base64
import html.parser
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from rq.registry import FailedJobRegistry

from logjobs import analysis, events, queries
from logjobs.defaults import FILES_KEY, LEVELS, QUEUES
from logjobs.embedded import free_port
from logjobs.exceptions import ConfigError
from logjobs.models import MODELS, db, open_database, utc
from logjobs.rows import apply
from logjobs.rqsafe import Job, Queue
from logjobs.settings import Settings
from logjobs.web import create_app
from logjobs.web.security import check_bind

from helpers import APP, BIN, WEB, analysed

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "web"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
USER, PASSWORD = "ops", "correct horse battery staple"

# -- a database seeded through the mirror's own apply(), so its rows are the real shape ----------


def ev(t0, job_id, path, state, attempt=0, at=0.0, **kw):
    return events.Event(job_id, path, state, attempt, at=t0 + at, **kw)


def pushed(t0, job_id, path, queue):
    return ev(t0, job_id, path, "queued", parts=1, queue=queue, patterns=["ERROR", "FATAL"])


def scanned(t0, job_id, path, queue, result, at=1.0):
    """A file pushed, then scanned by w1 on its first attempt (started at `at` s, done 0.5 s on)."""
    return [
        pushed(t0, job_id, path, queue),
        ev(t0, job_id, path, "started", 1, at, worker="w1"),
        ev(t0, job_id, path, "finished", 1, at + 0.5, worker="w1", result=result),
    ]


def result(**counts):
    return {"counts": counts, "lines": 10, "bytes": 100, "compression": None}


def history_of_four_files(t0):
    return [
        # a.log: one clean run on high, 0.5 s.
        pushed(t0, "j-a", "/l/a.log", "high"),
        ev(t0, "j-a", "/l/a.log", "started", 1, 1.0, worker="w1"),
        ev(t0, "j-a", "/l/a.log", "finished", 1, 1.5, worker="w1", result=result(ERROR=5, FATAL=1)),
        # b.log: its worker died; the keeper recovered it, and attempt 2 took 20 s.
        pushed(t0, "j-b", "/l/b.log", "default"),
        ev(t0, "j-b", "/l/b.log", "started", 1, 1.0, worker="w1"),
        ev(
            t0,
            "j-b",
            "/l/b.log",
            "queued",
            1,
            9.0,
            worker="w1",
            error="worker w1 died or was cut off during attempt 1",
        ),
        ev(t0, "j-b", "/l/b.log", "started", 2, 10.0, worker="w2"),
        ev(
            t0, "j-b", "/l/b.log", "finished", 2, 30.0, worker="w2", result=result(ERROR=2, FATAL=0)
        ),
        # c.log: not a regular file.
        pushed(t0, "j-c", "/l/c.log", "default"),
        ev(t0, "j-c", "/l/c.log", "started", 1, 2.0, worker="w2"),
        ev(
            t0,
            "j-c",
            "/l/c.log",
            "failed",
            1,
            2.1,
            worker="w2",
            error="/l/c.log: not a regular file (FIFO)",
        ),
        # d.log: still waiting.
        pushed(t0, "j-d", "/l/d.log", "low"),
    ]


def finished_with(data, counts):
    """A finished result with the analysis a scan of `data` makes (its levels among it)."""
    return {
        "counts": counts,
        "lines": data.count(b"\n"),
        "bytes": len(data),
        "compression": None,
        "analysis": analysed(data).to_dict(),
    }


def history_with_levels(t0):
    """Two files analysed, APP's lines (INFO=2 WARN=1 ERROR=2) and WEB's (WARN=1 ERROR=2 FATAL=1,
    as test_queries works them out by hand), one failed, one still queued."""
    batch = []
    for job_id, path, queue, data, counts in (
        ("j-app", "/l/api/app.log", "high", APP, {"ERROR": 3, "FATAL": 0}),
        ("j-web", "/l/nginx/error.log", "default", WEB, {"ERROR": 0, "FATAL": 1}),
    ):
        batch += scanned(t0, job_id, path, queue, finished_with(data, counts))
    return batch + [
        pushed(t0, "j-gone", "/l/gone.log", "default"),
        ev(t0, "j-gone", "/l/gone.log", "started", 1, 2.0, worker="w2"),
        ev(t0, "j-gone", "/l/gone.log", "failed", 1, 2.1, worker="w2", error="not a regular file"),
        pushed(t0, "j-wait", "/l/waiting.log", "low"),
    ]


def seed(path, batch):
    database = open_database(str(path))
    for i, event in enumerate(batch):
        event.stream_id = f"{time.time_ns()}-{i}"
    with db.atomic():
        apply(batch)
    database.close()


@pytest.fixture
def seeded(tmp_path):
    path = tmp_path / "status.db"
    seed(path, history_of_four_files(time.time() - 60))
    return path


def app_for(db_path, redis_url="redis://127.0.0.1:1/0", **settings):
    app = create_app(Settings(db=str(db_path), redis_url=redis_url, **settings))
    app.testing = True
    return app


class _Tables(html.parser.HTMLParser):
    """The text of each cell of each row of each table, by the table's id."""

    def __init__(self):
        super().__init__()
        self.tables, self.table, self.cell = {}, None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.table = self.tables.setdefault(dict(attrs).get("id"), [])
        elif tag == "tr" and self.table is not None:
            self.table.append([])
        elif tag in ("td", "th") and self.table is not None:
            self.cell = ""
        elif tag == "div" and self.cell is not None:
            self.cell += " "  # a line of its own

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.table[-1].append(" ".join(self.cell.split()))
            self.cell = None
        elif tag == "table":
            self.table = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def table(page, table_id):
    """The rows of the table `table_id` of an HTML page, header first: {column: cell text}."""
    parser = _Tables()
    parser.feed(page)
    header, *rows = parser.tables[table_id]
    return [dict(zip(header, row)) for row in rows]


def basic(user=USER, password=PASSWORD):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def csrf_field(html):
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


# -- pages ---------------------------------------------------------------------------------------


def test_a_files_page_shows_its_format_and_what_its_chart_leaves_out(tmp_path):
    """The file's log format, and lines dated far from the rest named under the chart (a clock
    that was not set), not charted."""
    data = (
        b"".join(
            b"2024-05-%02d 12:00:00,000 %s [main] app: job %d done\n"
            % (day, b"ERROR" if day % 3 == 0 else b"INFO", day)
            for day in range(1, 29)
            for _ in range(20)
        )
        + b"1970-01-01 00:00:00,000 INFO [main] app: clock not set\n"
    )
    fmt = analysis.formats.detect(data, analysis.formats.BUILTIN)
    found = analysis.analyse(data, ["ERROR"], format=fmt).to_dict()
    t0 = time.time() - 60
    path = tmp_path / "status.db"
    seed(path, scanned(t0, "j-a", "/l/a.log", "high", {**result(ERROR=180), "analysis": found}))
    html = app_for(path).test_client().get("/file?path=/l/a.log").get_data(as_text=True)
    assert re.search(r'id="format"><code>log4j</code>', html)
    chart = json.loads(re.search(r'id="levels-data">(.*?)</script>', html)[1])
    assert (chart["unit"], len(chart["labels"])) == ("day", 28)
    assert "Not in the chart: 1 line dated far from the rest, 1970-01-01 00:00." in html


def test_pages_show_the_database(seeded):
    client = app_for(seeded).test_client()
    page = client.get("/").get_data(as_text=True)
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in page  # the pages work without Redis
    timeline = json.loads(re.search(r'id="timeline-data">(.*?)</script>', page).group(1))
    per_state = {s["state"]: sum(s["counts"]) for s in timeline["series"]}
    history = (
        sqlite3.connect(seeded)
        .execute("SELECT state, COUNT(*) FROM history GROUP BY state")
        .fetchall()
    )
    assert per_state == dict(dict.fromkeys(per_state, 0), **dict(history))
    assert timeline["unit"] == "second" and len(timeline["labels"]) >= 30
    later = queries.timeline(now=utc(time.time() + 3 * 3600))  # the unit grows with the span
    assert (
        later["unit"] == "hour"
        and {s["state"]: sum(s["counts"]) for s in later["series"]} == per_state
    )
    assert table(page, "top")[0] == {  # top file: 5 + 1
        "file": "/l/a.log",
        "queue": "high",
        "lines matched": "6",
    }
    assert "/l/c.log: not a regular file (FIFO)" in page

    files = client.get("/files?queue=default&state=failed").get_data(as_text=True)
    assert re.findall(r'<tr data-path="([^"]+)"', files) == ["/l/c.log"]
    # A Cancel button on each row whose scan has not ended (d.log waits), and on its page.
    everything = client.get("/files").get_data(as_text=True)
    rows = re.findall(r'<tr data-path="([^"]+)".*?</tr>', everything, re.S)
    cancel = re.findall(r'<tr data-path="([^"]+)"[^>]*>((?:(?!</tr>).)*)</tr>', everything, re.S)
    assert [path for path, cells in cancel if 'action="/cancel"' in cells] == ["/l/d.log"]
    assert len(rows) == 4
    assert 'action="/cancel"' in client.get("/file?path=/l/d.log").get_data(as_text=True)
    assert 'action="/cancel"' not in client.get("/file?path=/l/a.log").get_data(as_text=True)
    files = client.get("/files?path=b.lo").get_data(as_text=True)
    assert re.findall(r'<tr data-path="([^"]+)"', files) == ["/l/b.log"]
    assert re.findall(r'<tr data-path="([^"]+)"', client.get("/files").get_data(as_text=True)) == [
        "/l/a.log",
        "/l/b.log",
        "/l/c.log",
        "/l/d.log",
    ]
    # A node's queue is a queue too; a name that is none, or an unknown state, is said so, not
    # ignored.
    assert (
        re.findall(
            r'<tr data-path="([^"]+)"', client.get("/files?queue=web1.high").get_data(as_text=True)
        )
        == []
    )
    files = client.get("/files?queue=bogus&state=done").get_data(as_text=True)
    assert (
        "no queue &#39;bogus&#39;: showing every queue" in files
        and "no state &#39;done&#39;" in files
    )
    assert len(re.findall(r'<tr data-path="([^"]+)"', files)) == 4

    failures = client.get("/failures").get_data(as_text=True)
    assert re.findall(r'<tr data-path="([^"]+)"', failures) == ["/l/c.log"]
    assert 'action="/retry"' in failures and "not a regular file (FIFO)" in failures

    file = client.get("/file", query_string={"path": "/l/b.log"}).get_data(as_text=True)
    assert re.findall(r'<tr data-state="(\w+)">', file) == [
        "queued",
        "started",
        "queued",
        "started",
        "finished",
    ]
    assert "worker w1 died or was cut off during attempt 1" in file
    assert client.get("/file", query_string={"path": "/nope"}).status_code == 404


def test_the_files_page_has_levels_and_compact_cells(tmp_path):
    """Lines per level as `report` prints them, a dash for no counts or levels, and a failure's
    reason under its path, not in the matching lines' column."""
    path = tmp_path / "status.db"
    seed(path, history_with_levels(time.time() - 60))
    rows = table(app_for(path).test_client().get("/files").get_data(as_text=True), "files")
    assert list(rows[0]) == [
        "file",
        "state",
        "queue",
        "attempts",
        "matching lines",
        "levels",
        "lines",
        "size",
        "ended (UTC)",
    ]
    by_path = {row["file"].split()[0]: row for row in rows}
    assert {p: (r["matching lines"], r["levels"]) for p, r in by_path.items()} == {
        "/l/api/app.log": ("ERROR 3 FATAL 0", "INFO=2 WARN=1 ERROR=2"),
        "/l/gone.log": ("–", "–"),
        "/l/nginx/error.log": ("ERROR 0 FATAL 1", "WARN=1 ERROR=2 FATAL=1"),
        "/l/waiting.log": ("–", "–"),
    }
    assert by_path["/l/gone.log"]["file"] == "/l/gone.log not a regular file"
    assert by_path["/l/api/app.log"]["size"] == f"{len(APP)} B"


def test_unknown_pages_and_bad_requests_get_the_dashboards_own_page(seeded, tmp_path):
    client = app_for(seeded).test_client()
    policy = client.get("/files").headers["Content-Security-Policy"]  # no inline script
    for url, status, message in (
        (
            "/file?path=/nope",
            404,
            "no file /nope: it was never pushed, or the mirror has not recorded it yet",
        ),
        ("/no/such/page", 404, "no page /no/such/page here"),
        ("/static/nope.css", 404, "no page /static/nope.css here"),
        ("/file", 400, "which file? Give its absolute path: /file?path=/var/log/app.log"),
        ("/file?path=l/a.log", 400, "&#39;l/a.log&#39; is not an absolute path"),
        ("/retry", 405, "GET is not allowed on /retry (only POST)"),
    ):
        reply = client.get(url)
        page = reply.get_data(as_text=True)
        assert reply.status_code == status, url
        assert reply.headers["Content-Security-Policy"] == policy, url
        # The dashboard's layout, the status, what was wrong, and the way back.
        assert '<a class="nav-link" href="/files">Files</a>' in page, url
        assert f'<h4 id="error" data-status="{status}">{status} ' in page, url
        assert re.search(r'id="error-message">([^<]*)</p>', page)[1].startswith(message), url
        assert '<a href="/files" id="back">' in page, url
        assert 'id="live"' not in page, url  # a page that will not change does not reload
    assert set(client.get("/retry").headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    # What was not found is shown as text.
    reply = client.get("/file", query_string={"path": "/l/<script>alert(1)</script>.log"})
    page = reply.get_data(as_text=True)
    assert reply.status_code == 404 and "<script>alert" not in page
    assert "no file /l/&lt;script&gt;alert(1)&lt;/script&gt;.log:" in page
    # The same from the Retry button's form.
    token = csrf_field(client.get("/failures").get_data(as_text=True))
    reply = client.post("/retry", data={"csrf_token": token, "path": "/l/gone.log"})
    assert reply.status_code == 404 and "no file /l/gone.log:" in reply.get_data(as_text=True)
    reply = client.post("/retry", data={"csrf_token": token})
    assert reply.status_code == 400 and "which file?" in reply.get_data(as_text=True)
    # rq-dashboard's routes keep their own answers; an unknown page needs no database.
    reply = client.get("/rq/1/view/queues")
    assert reply.status_code == 404 and 'id="error"' not in reply.get_data(as_text=True)
    reply = app_for(tmp_path / "not-yet.db").test_client().get("/nope")
    assert reply.status_code == 404 and 'id="error"' in reply.get_data(as_text=True)


def test_pages_say_when_there_is_no_database_yet(tmp_path):
    client = app_for(tmp_path / "not-yet.db").test_client()
    reply = client.get("/")
    assert reply.status_code == 503 and "logjobs mirror" in reply.get_data(as_text=True)
    assert not (tmp_path / "not-yet.db").exists()  # only the mirror creates it


def test_pages_say_so_when_the_database_is_deleted_and_make_no_new_one(seeded):
    client = app_for(seeded).test_client()
    assert client.get("/").status_code == 200
    seeded.rename(seeded.with_suffix(".bak"))
    reply = client.get("/")
    assert reply.status_code == 503 and "logjobs mirror" in reply.get_data(as_text=True)
    assert not seeded.exists()


def test_pages_and_metrics_on_postgresql(postgres_url):
    url = postgres_url
    database = open_database(url)
    database.drop_tables(MODELS)
    database.close()
    seed(url, history_of_four_files(time.time() - 60))
    client = app_for(url).test_client()
    for page in ("/", "/files?path=b.lo&queue=default", "/failures", "/file?path=/l/b.log"):
        assert client.get(page).status_code == 200, page
    timeline = json.loads(
        re.search(r'id="timeline-data">(.*?)</script>', client.get("/").get_data(as_text=True))[1]
    )
    assert {s["state"]: sum(s["counts"]) for s in timeline["series"]} == {
        "queued": 5,
        "scheduled": 0,
        "started": 4,
        "finished": 2,
        "failed": 1,
        "canceled": 0,
    }
    got = scrape(client)
    assert got[("logjobs_recoveries_total", (("queue", "default"),))] == 1
    assert got[("logjobs_matched_lines_total", (("pattern", "ERROR"),))] == 7
    assert got[("logjobs_scan_duration_seconds_count", (("queue", "default"),))] == 1
    # Lines per level, summed by PostgreSQL (json_each_text) as reading each file's levels sums
    # them.
    seed(url, history_with_levels(time.time() - 60))
    client = app_for(url).test_client()  # seed() bound the models to a connection of its own
    assert client.get("/files").status_code == 200
    got = scrape(client)
    want = {"TRACE": 0, "DEBUG": 0, "INFO": 2, "WARN": 2, "ERROR": 4, "FATAL": 1}
    assert {lv: got[("logjobs_lines_by_level", (("level", lv),))] for lv in LEVELS} == want
    open_database(url, create=False)
    try:
        assert (
            queries.level_totals()
            == queries._level_totals_read()
            == {level: n for level, n in want.items() if n}
        )
    finally:
        db.close()


# -- metrics -------------------------------------------------------------------------------------


def scrape(client_or_url):
    if isinstance(client_or_url, str):
        with urllib.request.urlopen(client_or_url + "/metrics", timeout=10) as reply:
            text = reply.read().decode()
    else:
        reply = client_or_url.get("/metrics")
        assert reply.status_code == 200 and reply.content_type.startswith("text/plain")
        text = reply.get_data(as_text=True)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def expected_metrics(db_path):
    """The counters, computed straight from the history table with SQL of the test's own."""
    sql = sqlite3.connect(db_path)
    want = {}
    for queue in QUEUES:
        for state in ("finished", "failed"):
            want[("logjobs_jobs_total", (("queue", queue), ("state", state)))] = 0
        want[("logjobs_retries_total", (("queue", queue),))] = 0
        want[("logjobs_recoveries_total", (("queue", queue),))] = 0
    for queue, state, n in sql.execute(
        "SELECT queue, state, COUNT(*) FROM history WHERE state IN "
        "('finished', 'failed') GROUP BY queue, state"
    ):
        want[("logjobs_jobs_total", (("queue", queue), ("state", state)))] = n
    for queue, n in sql.execute(
        "SELECT queue, COUNT(*) FROM history WHERE state = 'started' AND attempt > 1 GROUP BY queue"
    ):
        want[("logjobs_retries_total", (("queue", queue),))] = n
    for queue, n in sql.execute(
        "SELECT queue, COUNT(*) FROM history WHERE error LIKE '%died or was cut off%' "
        "GROUP BY queue"
    ):
        want[("logjobs_recoveries_total", (("queue", queue),))] = n
    for pattern, n in sql.execute(
        "SELECT j.key, SUM(j.value) FROM history, json_each(history.counts) AS j "
        "WHERE state = 'finished' GROUP BY j.key"
    ):
        want[("logjobs_matched_lines_total", (("pattern", pattern),))] = n
    for queue in QUEUES:
        labels = (("queue", queue),)
        n, total = sql.execute(
            "SELECT COUNT(duration), TOTAL(duration) FROM history WHERE state = 'finished' "
            "AND queue = ?",
            (queue,),
        ).fetchone()
        want[("logjobs_scan_duration_seconds_count", labels)] = n
        want[("logjobs_scan_duration_seconds_sum", labels)] = pytest.approx(total)
        for bound in queries.DURATION_BUCKETS:
            (below,) = sql.execute(
                "SELECT COUNT(*) FROM history WHERE state = 'finished' AND queue = ? AND "
                "duration <= ?",
                (queue, bound),
            ).fetchone()
            want[
                (
                    "logjobs_scan_duration_seconds_bucket",
                    (("le", str(float(bound))), ("queue", queue)),
                )
            ] = below
        want[("logjobs_scan_duration_seconds_bucket", (("le", "+Inf"), ("queue", queue)))] = n
    for queue, state, n in sql.execute(
        "SELECT queue, status, COUNT(*) FROM scans GROUP BY queue, status"
    ):
        want[("logjobs_files", (("queue", queue), ("state", state)))] = n
    for level in LEVELS:
        want[("logjobs_lines_by_level", (("level", level),))] = 0
    for level, n in sql.execute(
        "SELECT j.key, SUM(j.value) FROM scans, json_each(scans.levels) AS j GROUP BY j.key"
    ):
        want[("logjobs_lines_by_level", (("level", level),))] = n
    return want


def assert_metrics_match(got, db_path):
    want = expected_metrics(db_path)
    assert {k: got.get(k) for k in want} == want
    assert not [k for k in got if k[0].startswith("logjobs_files") and k not in want and got[k]]


def test_metrics_parse_and_match_the_database_as_it_grows(seeded):
    client = app_for(seeded).test_client()
    first = scrape(client)
    assert_metrics_match(first, seeded)
    assert first[("logjobs_recoveries_total", (("queue", "default"),))] == 1
    assert first[("logjobs_retries_total", (("queue", "default"),))] == 1
    assert first[("logjobs_matched_lines_total", (("pattern", "ERROR"),))] == 7
    assert (
        first[("logjobs_scan_duration_seconds_bucket", (("le", "10.0"), ("queue", "default")))] == 0
    )
    assert (
        first[("logjobs_scan_duration_seconds_bucket", (("le", "30.0"), ("queue", "default")))] == 1
    )

    # Later rows are added to the running totals: the counters only grow, and still match.
    t0 = time.time()
    seed(
        seeded,
        [
            ev(t0, "j-d", "/l/d.log", "started", 1, 0.0, worker="w1"),
            ev(
                t0,
                "j-d",
                "/l/d.log",
                "finished",
                1,
                0.2,
                worker="w1",
                result=result(ERROR=3, FATAL=0),
            ),
        ],
    )
    second = scrape(client)
    assert_metrics_match(second, seeded)
    assert second[("logjobs_matched_lines_total", (("pattern", "ERROR"),))] == 10
    assert second[("logjobs_jobs_total", (("queue", "low"), ("state", "finished")))] == 1

    # A new database in its place (fewer rows, other ones) starts the counters over.
    for leftover in seeded.parent.glob(seeded.name + "*"):
        leftover.unlink()
    seed(seeded, history_of_four_files(time.time() - 60)[:3])
    third = scrape(client)
    assert_metrics_match(third, seeded)
    assert third[("logjobs_matched_lines_total", (("pattern", "ERROR"),))] == 5


#: A line of Prometheus' text format, strictly: HELP, TYPE, or a sample with its labels.
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
EXPOSITION_LINE = re.compile(
    rf"# HELP {_NAME} .+|# TYPE {_NAME} (counter|gauge|histogram|summary|untyped)|"
    rf'{_NAME}(\{{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\["\\n])*")'
    rf'(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\["\\n])*")*\}})? '
    r"([-+]?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?|[-+]?Inf|NaN)"
)


def test_metrics_have_lines_per_level_as_report_totals_them(tmp_path):
    path = tmp_path / "status.db"
    seed(path, history_with_levels(time.time() - 60))
    client = app_for(path).test_client()
    text = client.get("/metrics").get_data(as_text=True)
    assert [line for line in text.splitlines() if not EXPOSITION_LINE.fullmatch(line)] == []
    family = [line for line in text.splitlines() if "logjobs_lines_by_level" in line]
    assert family[:2] == [
        "# HELP logjobs_lines_by_level Lines per level in the files' latest scans, as logjobs "
        "report totals them.",
        "# TYPE logjobs_lines_by_level gauge",
    ]
    got = scrape(client)
    by_level = {level: got[("logjobs_lines_by_level", (("level", level),))] for level in LEVELS}
    assert by_level == {"TRACE": 0, "DEBUG": 0, "INFO": 2, "WARN": 2, "ERROR": 4, "FATAL": 1}
    assert_metrics_match(got, path)
    # What the database sums is what reading each file's levels sums, and what `report` totals.
    open_database(str(path), create=False)
    try:
        reported = {}
        for row in queries.report():
            for level, n in row["levels"].items():
                reported[level] = reported.get(level, 0) + n
        assert queries.level_totals() == queries._level_totals_read() == reported
        assert reported == {level: n for level, n in by_level.items() if n}
    finally:
        db.close()

    # A gauge: a file pushed again with fewer lines has fewer, and so has the sum.
    first_two = b"".join(APP.splitlines(keepends=True)[:2])
    t1 = time.time()
    again = finished_with(first_two, {"ERROR": 1, "FATAL": 0})
    seed(path, scanned(t1, "j-app2", "/l/api/app.log", "high", again, at=0.1))
    got = scrape(client)
    by_level = {level: got[("logjobs_lines_by_level", (("level", level),))] for level in LEVELS}
    assert by_level == {"TRACE": 0, "DEBUG": 0, "INFO": 1, "WARN": 1, "ERROR": 3, "FATAL": 1}
    assert_metrics_match(got, path)


# -- safe by default -----------------------------------------------------------------------------


def test_only_loopback_without_credentials():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(host, Settings())
    for host in ("0.0.0.0", "::", "192.0.2.1"):
        with pytest.raises(
            ConfigError, match="LOGJOBS_DASHBOARD_USER and LOGJOBS_DASHBOARD_PASSWORD"
        ):
            check_bind(host, Settings())
        check_bind(host, Settings(dashboard_user=USER, dashboard_password=PASSWORD))
    with pytest.raises(ConfigError, match="both"):
        check_bind("127.0.0.1", Settings(dashboard_user=USER))


def test_the_command_refuses_a_public_address_without_credentials(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGJOBS_")}
    env["LOGJOBS_DB"] = str(tmp_path / "status.db")
    proc = subprocess.run(
        [
            os.path.join(BIN, "logjobs"),
            "dashboard",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.count("\n") == 1
        and "without credentials" in proc.stderr
        and "Traceback" not in proc.stderr
    )


#: Every route that changes something: logjobs' Retry and rq-dashboard's own mutations.
MUTATIONS = [
    "/retry",
    "/cancel",
    "/rq/job/j-x/delete",
    "/rq/job/j-x/requeue",
    "/rq/requeue/default",
    "/rq/queue/default/failed/empty",
    "/rq/queue/default/compact",
]
PAGES = [
    "/",
    "/files",
    "/failures",
    "/file?path=/l/a.log",
    "/metrics",
    "/static/logjobs.js",
    "/rq/",
    "/rq/0/view/workers",
    "/rq/0/data/queues.json",
    "/rq/static/css/main.css",
]


def test_rq_dashboard_says_when_redis_fails_it(seeded, redis_server):
    # It answered 500, with a traceback in the log: Redis away, or refusing to compact an empty
    # queue.
    client = app_for(seeded).test_client()  # a Redis no one listens at
    for page in (
        "/rq/0/data/queues.json",
        "/rq/",
    ):  # the queues page said "Connection Error" with a 200
        reply = client.get(page)
        assert reply.status_code == 503 and reply.get_data(as_text=True).startswith(
            "Redis: ConnectionError: "
        )
    client = app_for(seeded, redis_server.url).test_client()
    client.get("/rq/")  # the CSRF cookie rq-dashboard's scripts send back
    token = client.get_cookie("_csrf_token").value
    reply = client.post("/rq/queue/high/compact", headers={"X-CSRFToken": token})
    assert reply.status_code == 503 and "ResponseError" in reply.get_data(as_text=True)


def test_with_credentials_strangers_get_nothing(seeded, redis_server):
    client = app_for(
        seeded, redis_server.url, dashboard_user=USER, dashboard_password=PASSWORD
    ).test_client()
    for url in PAGES + MUTATIONS:
        for headers in (
            {},
            basic(password="wrong"),
            basic(user="root"),
            {"Authorization": "Basic !!"},
        ):
            for method in ("GET", "POST"):
                client.application.extensions[
                    "logjobs.backoff"
                ].failures.clear()  # see test_security
                reply = client.open(url, method=method, headers=headers)
                assert reply.status_code == 401, (method, url, headers)
                assert reply.headers["WWW-Authenticate"].startswith("Basic")
    for url in PAGES:
        assert client.get(url, headers=basic()).status_code == 200, url
    assert 'href="/">&larr; logjobs</a>' in client.get("/rq/", headers=basic()).get_data(
        as_text=True
    )
    assert client.get("/rq/0/view/job/lj-gone", headers=basic()).status_code == 404
    assert client.get("/rq/1/view/queues", headers=basic()).status_code == 404  # one Redis only


@pytest.mark.parametrize("credentials", [False, True], ids=["loopback", "basic-auth"])
def test_every_mutating_route_needs_post_and_a_csrf_token(seeded, redis_server, credentials):
    auth = basic() if credentials else {}
    extra = {"dashboard_user": USER, "dashboard_password": PASSWORD} if credentials else {}
    app = app_for(seeded, redis_server.url, **extra)
    conn = redis.Redis.from_url(redis_server.url)
    client, stranger = app.test_client(), app.test_client()
    token = csrf_field(client.get("/failures", headers=auth).get_data(as_text=True))
    assert client.get("/rq/", headers=auth).status_code == 200
    cookie = client.get_cookie("_csrf_token")  # how rq-dashboard's scripts get theirs
    assert cookie is not None and cookie.http_only is False and cookie.same_site == "Strict"
    rq_token = cookie.value
    other = csrf_field(
        stranger.get("/failures", headers=auth).get_data(as_text=True)
    )  # another session's

    assert (
        client.get("/rq/requeue/default", headers=auth).status_code == 405
    )  # rq-dashboard took GET here
    for url in MUTATIONS:
        for form, headers in (
            ({}, {}),
            ({"csrf_token": "forged"}, {}),
            ({}, {"X-CSRFToken": "forged"}),
            ({"csrf_token": other}, {}),
            ({}, {"X-CSRFToken": other}),
        ):
            reply = client.post(
                url, data=dict(form, path="/l/c.log"), headers=dict(auth, **headers)
            )
            assert reply.status_code == 400, (url, form, headers)
            assert "CSRF" in reply.get_data(as_text=True)
        # A cross-site page cannot read the victim's token; with its own session's, it is refused
        # too.
        assert (
            stranger.post(
                url, data={"csrf_token": token, "path": "/l/c.log"}, headers=auth
            ).status_code
            == 400
        )
    assert conn.hget(FILES_KEY, "/l/c.log") is None  # nothing was retried

    # The same requests with the session's token go through: the refusals above were the token's
    # doing.
    reply = client.post("/retry", data={"csrf_token": token, "path": "/l/c.log"}, headers=auth)
    assert reply.status_code == 303 and reply.headers["Location"].endswith("/file?path=/l/c.log")
    assert (
        conn.hget(FILES_KEY, "/l/c.log") is not None
        and Queue("default", connection=conn).count == 1
    )
    page = client.get(reply.headers["Location"], headers=auth).get_data(as_text=True)
    assert "retrying /l/c.log in default as job lj-" in page
    # Again, before the mirror has the new scan (the row still says failed): the job is in flight.
    job_id = conn.hget(FILES_KEY, "/l/c.log").decode()
    reply = client.post(
        "/retry",
        data={"csrf_token": token, "path": "/l/c.log"},
        headers=auth,
        follow_redirects=True,
    )
    assert f"/l/c.log is already queued or running as {job_id}<" in reply.get_data(as_text=True)
    job = Job.create("os.getcwd", id="j-x", connection=conn, origin="default")
    job.save()
    FailedJobRegistry("default", connection=conn).add(job, ttl=-1)
    # (the retried job is in the queue now: RQ cannot compact an empty one)
    for url in (
        "/rq/job/j-x/requeue",
        "/rq/job/j-x/delete",
        "/rq/requeue/default",
        "/rq/queue/default/failed/empty",
        "/rq/queue/default/compact",
    ):
        reply = client.post(url, headers=dict(auth, **{"X-CSRFToken": rq_token}))
        assert (reply.status_code, reply.json["status"]) == (200, "OK"), url
    assert not conn.exists(Job.key_for("j-x"))
    # Only failed files are retried.
    reply = client.post(
        "/retry",
        data={"csrf_token": token, "path": "/l/a.log"},
        headers=auth,
        follow_redirects=True,
    )
    assert "is finished, not failed: nothing to retry" in reply.get_data(as_text=True)
    assert conn.hget(FILES_KEY, "/l/a.log") is None
    # Cancel takes the retried scan back, and goes back only to a page of this site.
    assert Queue("default", connection=conn).count == 1
    reply = client.post(
        "/cancel",
        data={"csrf_token": token, "path": "/l/c.log", "back": "//elsewhere.example/x"},
        headers=auth,
    )
    assert reply.status_code == 303 and reply.headers["Location"].endswith("/file?path=/l/c.log")
    page = client.get(reply.headers["Location"], headers=auth).get_data(as_text=True)
    assert "canceled the scan of /l/c.log" in page
    assert Queue("default", connection=conn).count == 0
    reply = client.post(
        "/cancel",
        data={"csrf_token": token, "path": "/l/c.log", "back": "/files?state=queued"},
        headers=auth,
        follow_redirects=True,
    )
    assert "its scan has ended, nothing to cancel" in reply.get_data(as_text=True)
    assert reply.request.path == "/files"
    conn.close()


def test_the_buttons_say_so_when_redis_does_not_answer(seeded):
    client = app_for(seeded).test_client()  # its Redis: a port nothing listens on
    token = csrf_field(client.get("/failures").get_data(as_text=True))
    for url, path, said in (
        ("/retry", "/l/c.log", "not retried: cannot reach Redis at redis://127.0.0.1:1/0"),
        ("/cancel", "/l/d.log", "not canceled: cannot reach Redis at redis://127.0.0.1:1/0"),
    ):
        reply = client.post(url, data={"csrf_token": token, "path": path}, follow_redirects=True)
        assert reply.status_code == 200 and said in reply.get_data(as_text=True), url


def test_retry_pushes_again_as_the_file_was_pushed(tmp_path, redis_server):
    """Its queue, patterns and -i, from the row; the settings' retry policy (it dropped -i)."""
    t0 = time.time() - 60
    path = tmp_path / "status.db"
    push_event = ev(t0, "j-i", "/l/i.log", "queued", parts=1, queue="high", patterns=["oops"])
    push_event.ignore_case = True
    seed(
        path,
        [
            push_event,
            ev(t0, "j-i", "/l/i.log", "started", 1, 1.0, worker="w1"),
            ev(t0, "j-i", "/l/i.log", "failed", 1, 1.5, worker="w1", error="I/O error"),
        ],
    )
    client = app_for(path, redis_server.url, retry_max=7).test_client()
    token = csrf_field(client.get("/failures").get_data(as_text=True))
    reply = client.post("/retry", data={"csrf_token": token, "path": "/l/i.log"})
    assert reply.status_code == 303
    conn = redis.Redis.from_url(redis_server.url)
    job = Job.fetch(conn.hget(FILES_KEY, "/l/i.log").decode(), connection=conn)
    options = job.args[1]  # a default (ignore_case false) is left out
    assert (job.origin, options["patterns"], options.get("ignore_case", False)) == (
        "high",
        ["oops"],
        True,
    )
    assert job.retries_left == 7
    conn.close()


def test_no_secret_reaches_a_page_or_the_log(seeded, redis_server, tmp_path):
    secret = "s3cret-Redis-pw"
    conn = redis.Redis.from_url(redis_server.url)
    conn.config_set("requirepass", secret)
    conn.close()
    url = f"redis://:{secret}@127.0.0.1:{redis_server.port}/0"
    client = app_for(seeded, url).test_client()
    for page in PAGES + ["/rq/0/view/jobs", "/rq/0/data/workers.json"]:
        reply = client.get(page)
        assert reply.status_code == 200, page
        assert secret not in reply.get_data(as_text=True), page
    assert f"***@127.0.0.1:{redis_server.port}/0" in client.get("/rq/").get_data(as_text=True)

    port = free_port()
    env = dict(os.environ, LOGJOBS_REDIS_URL=url, LOGJOBS_DB=str(seeded))
    env.pop("LOGJOBS_CONFIG", None)
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [os.path.join(BIN, "logjobs"), "-v", "dashboard", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = wait_for_http(port, proc)
        for page in ("/", "/rq/", "/metrics"):
            urllib.request.urlopen(base + page, timeout=10).read()
    finally:
        proc.terminate()
        proc.wait(10)
    text = log.read_text()
    assert f"http://127.0.0.1:{port}/" in text and "redis://:***@" in text
    assert secret not in text


# -- a real browser on a live pipeline -----------------------------------------------------------


def wait_for_http(port, proc, timeout=30):
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the dashboard exited"
        try:
            urllib.request.urlopen(base + "/static/logjobs.js", timeout=2).read()
            return base
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError("the dashboard did not start")


@pytest.fixture
def browser(tmp_path):
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        # CI installs it (.ci/run): there, a missing browser is a failure, not a reason to skip.
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"no headless Chromium at {CHROMIUM} with {CHROMEDRIVER}: "
            "apt-get install -y chromium chromium-driver"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


class Page:
    """The browser, with waits that survive the pages' own reloads, and screenshots kept as
    artifacts."""

    def __init__(self, driver, base):
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.base = driver, base
        self.wait = lambda what, timeout=30: WebDriverWait(
            driver,
            timeout,
            poll_frequency=0.2,
            ignored_exceptions=(StaleElementReferenceException,),
        ).until(lambda d: what(), message=getattr(what, "__doc__", None))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def open(self, path):
        self.driver.get(self.base + path)

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def table(self, selector):
        """The text of each cell of each row matched by `selector`."""
        return self.js(
            "return [...document.querySelectorAll(arguments[0])].map("
            "tr => [...tr.cells].map(td => td.innerText.trim()))",
            selector,
        )

    def shot(self, name):
        """The whole page, however long."""
        size = self.driver.get_window_size()
        width, height = size["width"], size["height"]
        self.driver.set_window_size(
            width, max(height, self.js("return document.documentElement.scrollHeight"))
        )
        self.driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
        self.driver.set_window_size(width, height)

    def errors(self):
        """Console errors, ignoring none: a failed script or a missing file shows up here."""
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture
def logs():
    """A short directory of logs (its paths show in the screenshots)."""
    top = Path(tempfile.mkdtemp(prefix="lj-"))
    (top / "var" / "log" / "app").mkdir(parents=True)
    yield top / "var" / "log" / "app"
    shutil.rmtree(top)


def test_browser_follows_a_live_pipeline_and_retries_a_failure(cluster, browser, logs):
    (logs / "api.log").write_text("INFO ok\nERROR boom\nERROR again\n" * 50)
    (logs / "web.log").write_text("INFO fine\nERROR one\n" * 20)
    (logs / "batch.log").write_text("INFO quiet\n" * 10)
    pipe = logs / "events.log"
    os.mkfifo(pipe)

    cluster.mirror()
    port = free_port()
    dash = cluster.spawn(
        [os.path.join(BIN, "logjobs"), "dashboard", "--port", str(port)], "dashboard"
    )
    page = Page(browser, wait_for_http(port, dash))
    cluster.run("push", "--priority", "high", str(logs / "api.log"), check=True)
    cluster.run("push", str(logs / "web.log"), str(pipe), check=True)
    cluster.run("push", "--priority", "low", str(logs / "batch.log"), check=True)

    # rq-dashboard: the three queues, their jobs waiting (no worker yet) ...
    page.open("/rq/")

    def queues():
        """rq-dashboard lists high, default and low, with queued jobs"""
        rows = {r[0]: r for r in page.table("#queues tr[data-role=queue]")}
        return set(rows) == set(QUEUES) and rows["high"][1] == "1" and rows

    assert page.wait(queues)["high"][5] == "0"
    page.shot("rq-queues-waiting")
    # ... then a worker starts and, without a reload, the job moves to finished.
    cluster.worker(name="browser-worker")

    def high_finished():
        """rq-dashboard shows high's job finished"""
        rows = {r[0]: r for r in page.table("#queues tr[data-role=queue]")}
        return (
            rows.get("high", [None] * 6)[1] == "0"
            and rows["high"][5] == "1"
            and rows["default"][6] == "1"
        )

    page.wait(high_finished)
    page.shot("rq-queues")
    page.open("/rq/0/view/workers")

    def worker_listed():
        """rq-dashboard lists the worker"""
        return any(
            "browser-worker" in " ".join(r) for r in page.table("#workers tr[data-role=worker]")
        )

    page.wait(worker_listed)
    page.shot("rq-workers")

    # logjobs' overview, one click away: the counts, the chart, the failure; the page reloads
    # itself.
    browser.find_element("link text", "\u2190 logjobs").click()

    def settled():
        """the overview shows 3 finished and 1 failed"""
        cards = dict(
            page.js(
                "return [...document.querySelectorAll('.state-card')].map("
                "c => [c.dataset.state, c.querySelector('.count').innerText])"
            )
        )
        return cards["finished"] == "3" and cards["failed"] == "1"

    page.wait(settled)
    chart = page.js(
        "const c = Chart.getChart('timeline'); return c.data.datasets.map("
        "d => [d.label, d.data.reduce((a, b) => a + b, 0)])"
    )
    chart = dict(chart)
    assert (
        chart["finished"] == 3
        and chart["failed"] == 1
        and chart["started"] == 4
        and chart["queued"] == 4
    )
    assert page.js("return document.getElementById('timeline').height") > 100
    assert "not a regular file" in " ".join(sum(page.table("#latest-failures tr"), []))
    page.shot("overview")

    page.open("/files")
    assert [r[1] for r in page.table("#files tbody tr")] == [
        "finished",
        "finished",
        "failed",
        "finished",
    ]
    page.shot("files")

    # The failure, its reason, and Retry once the FIFO is a regular file.
    page.open("/failures")
    (row,) = page.table("#failures tbody tr")
    assert row[0] == str(pipe) and "not a regular file" in row[1] and row[2] == "1"
    page.shot("failures")
    os.remove(pipe)
    pipe.write_text("ERROR late\nINFO\nERROR later\n")
    browser.find_element("css selector", "#failures form.retry button").click()

    def retried_and_finished():
        """the file page shows the retried file finished, with its counts"""
        return (
            browser.find_element("css selector", "#status .state").text == "finished"
            and "ERROR 2" in browser.find_element("css selector", "#details").text
        )

    page.wait(lambda: "/file?path=" in browser.current_url)
    assert "retrying " + str(pipe) in browser.find_element("css selector", ".flash").text
    page.wait(retried_and_finished)
    states = page.js(
        "return [...document.querySelectorAll('#history tbody tr')].map(tr => tr.dataset.state)"
    )
    assert states == ["queued", "started", "failed", "queued", "started", "finished"]
    page.shot("file")

    # rq-dashboard's own buttons still work from its pages: they send the CSRF token they are given.
    conn = redis.Redis.from_url(cluster.server.url)
    failed = Queue("default", connection=conn).failed_job_registry
    assert failed.count == 1
    page.open("/rq/0/view/jobs/default/failed/8/asc/1")
    page.wait(lambda: page.table("#jobs tr[data-role=job]"))
    page.shot("rq-failed-jobs")
    browser.find_element("id", "empty-btn").click()
    page.wait(lambda: browser.find_element("id", "confirmation-modal-yes").is_displayed())
    browser.find_element("id", "confirmation-modal-yes").click()
    page.wait(lambda: failed.count == 0)

    assert page.errors() == []

    # /metrics agrees with the database the pages were drawn from.
    cluster.run("mirror", "--once", check=True)
    assert_metrics_match(scrape(page.base), cluster.db)
    page.open("/metrics")
    assert "logjobs_jobs_total" in browser.find_element("tag name", "body").text
    page.shot("metrics")
    conn.close()

    if os.environ.get("LOGJOBS_UPDATE_SCREENSHOTS"):
        for name in (
            "overview",
            "files",
            "failures",
            "file",
            "rq-queues",
            "rq-workers",
            "rq-failed-jobs",
            "metrics",
        ):
            shutil.copy(ARTIFACTS / f"{name}.png", ROOT / "docs" / "screenshots" / f"{name}.png")


def test_a_file_name_runs_no_script_on_rq_dashboards_pages(cluster, browser, logs):
    # rq-dashboard writes a job's description (the file's name), its error and its worker's job into
    # its pages unescaped; script run there could read the CSRF token of its buttons and empty
    # queues. logjobs escapes what it hands those pages: the name shows as text, and makes no
    # element.
    name = "<img src=x onerror=\"document.title='pwned'\"><b onmouseover=alert(6)>.log"
    (logs / name).write_text("ERROR\n")
    os.mkfifo(logs / "<i>fifo.log")  # fails, with its name in the error
    cluster.worker()
    pushed = json.loads(
        cluster.run("push", "--wait", "--json", "--batch-files", "1", str(logs)).stdout
    )["enqueued"]
    port = free_port()
    page = Page(
        browser,
        wait_for_http(
            port,
            cluster.spawn(
                [os.path.join(BIN, "logjobs"), "dashboard", "--port", str(port)], "dashboard"
            ),
        ),
    )
    for job in pushed:
        page.open(f"/rq/0/view/job/{job['job_id']}")
        page.wait(
            lambda: (
                "scan "
                in page.js("return document.querySelector('.description-scroll')?.innerText || ''")
            )
        )
        assert os.path.basename(job["path"]) in page.js("return document.body.innerText")
        assert (
            page.js(
                "return document.querySelectorAll('#job-data img, #job-data b, #job-data i').length"
            )
            == 0
        )
    page.open("/rq/0/view/jobs/default/failed/8/asc/1")
    page.wait(lambda: page.table("#jobs tr[data-role=job]"))
    assert "<i>fifo.log" in page.js("return document.body.innerText")
    assert page.js("return document.querySelectorAll('#jobs i, #jobs img').length") == 0
    time.sleep(1)  # an image's handler would have run by now
    assert browser.title != "pwned"
    assert page.errors() == []


#: A file deep in long-named directories: at 1024 px its path wraps, and only after a '/'.
LONG_PATH = (
    "/srv/logs/production-cluster-eu-west-1/application-frontend-server-07"
    "/nginx-access-logs-archive/2024-05-01/access-log-rotated-with-a-long-name.log"
)
#: Workers named as RQ names them (32 hex digits), and a job as `push` names it.
WORKERS = ("5f0c6b1e9d2a4c7f8e3b0a1d2c3e4f5a", "9a8b7c6d5e4f30211234567890abcdef")
JOB = "lj-0123456789abcdef"


def history_of_a_long_named_file(t0):
    """LONG_PATH taken back from a dead worker, then finished on another: a history as wide as a
    real cluster's."""
    return [
        pushed(t0, JOB, LONG_PATH, "default"),
        ev(t0, JOB, LONG_PATH, "started", 1, 1.0, worker=WORKERS[0]),
        ev(
            t0,
            JOB,
            LONG_PATH,
            "queued",
            1,
            9.0,
            worker=WORKERS[0],
            error=f"worker {WORKERS[0]} died or was cut off during attempt 1",
        ),
        ev(t0, JOB, LONG_PATH, "started", 2, 10.0, worker=WORKERS[1]),
        ev(
            t0,
            JOB,
            LONG_PATH,
            "finished",
            2,
            12.0,
            worker=WORKERS[1],
            result=finished_with(APP * 300, {"ERROR": 600, "FATAL": 0}),
        ),
    ]


#: The text of each line an element's text is laid out in (arguments[0]: the element).
LINES_OF = """
const range = document.createRange(), lines = [];
let top = null;
const walker = document.createTreeWalker(arguments[0], NodeFilter.SHOW_TEXT);
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  for (let i = 0; i < node.length; i++) {
    range.setStart(node, i);
    range.setEnd(node, i + 1);
    const rect = range.getBoundingClientRect();
    if (top === null || rect.top > top + rect.height / 2) { lines.push(''); top = rect.top; }
    lines[lines.length - 1] += node.data[i];
  }
}
return lines;
"""
#: The cells of a column of the table arguments[0], by its header's text arguments[1].
COLUMN = """
const [table, name] = arguments;
const at = [...table.tHead.rows[0].cells].findIndex(th => th.innerText.trim() === name);
return [table.tHead.rows[0].cells[at], ...[...table.tBodies[0].rows].map(tr => tr.cells[at])];
"""


def test_browser_at_1024px_paths_break_at_slashes_and_tables_stay_in_the_page(browser, tmp_path):
    path = tmp_path / "status.db"
    t0 = time.time() - 60
    seed(path, history_with_levels(t0) + history_of_a_long_named_file(t0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGJOBS_")}
    env.update(LOGJOBS_DB=str(path), LOGJOBS_REDIS_URL="redis://127.0.0.1:1/0")  # none needed
    port = free_port()
    dash = subprocess.Popen(
        [os.path.join(BIN, "logjobs"), "dashboard", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        page = Page(browser, wait_for_http(port, dash))
        browser.set_window_size(1024, 900)
        browser.set_window_size(2048 - page.js("return window.innerWidth"), 900)
        assert page.js("return window.innerWidth") == 1024

        page.open("/files")
        files = browser.find_element("id", "files")
        link = browser.find_element("css selector", f'#files tr[data-path="{LONG_PATH}"] a.path')
        lines = page.js(LINES_OF, link)
        assert "".join(lines) == LONG_PATH and len(lines) > 1, lines
        assert [line for line in lines[:-1] if not line.endswith("/")] == [], lines
        header, *sizes = page.js(COLUMN, files, "size")
        for cell in sizes:
            style = [cell.value_of_css_property(p) for p in ("white-space", "text-align")]
            assert style == ["nowrap", "right"]
            assert len(page.js(LINES_OF, cell)) <= 1
        assert "91.7 KiB" in [cell.text for cell in sizes]  # LONG_PATH's
        # The matching lines' column is as wide as its widest cell, no wider.
        header, *counts = page.js(COLUMN, files, "matching lines")
        widest = page.js(
            "const range = document.createRange(); return Math.max(...arguments[0].map(td => {"
            "range.selectNodeContents(td); return range.getBoundingClientRect().width; }))",
            counts,
        )
        padding = page.js(
            "const s = getComputedStyle(arguments[0]);"
            "return parseFloat(s.paddingLeft) + parseFloat(s.paddingRight)",
            header,
        )
        assert header.rect["width"] <= widest + padding + 1
        assert page.js("return document.documentElement.scrollWidth") <= page.js(
            "return document.documentElement.clientWidth"
        )
        page.shot("files-1024")

        page.open("/file?path=" + urllib.parse.quote(LONG_PATH))
        lines = page.js(LINES_OF, browser.find_element("css selector", "h4.path"))
        assert [line for line in lines[:-1] if not line.endswith("/")] == [], lines
        assert page.js("return document.documentElement.scrollWidth") <= page.js(
            "return document.documentElement.clientWidth"
        )
        history = browser.find_element("id", "history")
        assert len(history.find_elements("css selector", "tbody tr")) == 5
        assert WORKERS[0] in history.text
        page.shot("file-1024")
        assert page.errors() == []

        page.open("/file?path=/nope")
        assert browser.find_element("id", "error").text == "404 Not Found"
        page.shot("not-found")
    finally:
        dash.terminate()
        dash.wait(10)


def test_browser_shows_top_messages_and_levels_over_time(cluster, browser, logs):
    from helpers import APP, OPEN_FAILED, UPSTREAM, WEB

    (logs / "api.log").write_bytes(APP)
    (logs / "nginx-error.log").write_bytes(WEB)
    cluster.worker()
    cluster.run("push", "--wait", str(logs), check=True)
    cluster.run("mirror", "--once", check=True)
    port = free_port()
    dash = cluster.spawn(
        [os.path.join(BIN, "logjobs"), "dashboard", "--port", str(port)], "dashboard"
    )
    page = Page(browser, wait_for_http(port, dash))

    page.open("/")
    browser.find_element("link text", "Messages").click()
    page.wait(lambda: page.table("#messages tbody tr"))
    rows = page.table("#messages tbody tr")
    assert [r[:3] for r in rows] == [  # every line of a format, whatever its level
        ["2", "1", "ERROR"],
        ["2", "1", "ERROR"],
        ["1", "1", "INFO"],
        ["1", "1", "WARN"],
        ["1", "1", "INFO"],
        ["1", "1", "WARN"],
        ["1", "1", "FATAL"],
    ]
    assert rows[0][3].startswith(UPSTREAM) and rows[1][3].startswith(OPEN_FAILED)
    chart = dict(
        page.js(
            "const c = Chart.getChart('levels-chart'); return c.data.datasets.map("
            "d => [d.label, d.data.reduce((a, b) => a + b, 0)])"
        )
    )
    assert chart == {"INFO": 2, "WARN": 2, "ERROR": 4, "FATAL": 1}
    assert (
        page.js("return Chart.getChart('levels-chart').data.labels.length") == 3
    )  # 12:00 .. 14:03 by hour
    page.shot("messages")

    # Filters: the nginx file only, from 14:01 UTC.
    browser.find_element("name", "path").send_keys("*nginx*")
    browser.find_element("name", "since").send_keys("2024-05-01T14:01")
    browser.find_element("css selector", "#message-filters button").click()
    page.wait(lambda: "since=" in browser.current_url)
    assert [r[:3] for r in page.table("#messages tbody tr")] == [
        ["1", "1", "ERROR"],
        ["1", "1", "WARN"],
    ]
    browser.find_element("name", "since").clear()
    browser.find_element("name", "since").send_keys("last week")
    browser.find_element("css selector", "#message-filters button").click()
    page.wait(lambda: browser.find_elements("id", "filter-error"))
    assert "bad time 'last week'" in browser.find_element("id", "filter-error").text

    # A file's page: its lines per level, its top messages, its chart.
    page.open("/file?path=" + str(logs / "api.log"))
    assert browser.find_element("id", "levels").text == "INFO=2 WARN=1 ERROR=2"
    assert browser.find_element("id", "format").text == "log4j"
    assert [r[:3] for r in page.table("#messages tbody tr")] == [
        ["2", "1", "ERROR"],
        ["1", "1", "INFO"],
        ["1", "1", "WARN"],
        ["1", "1", "INFO"],
    ]
    assert (
        page.js("return Chart.getChart('levels-chart').data.labels.length") == 3
    )  # 12:00, 12:01, 12:02
    page.shot("file-messages")
    assert page.errors() == []
    if os.environ.get("LOGJOBS_UPDATE_SCREENSHOTS"):
        for name in ("messages", "file-messages"):
            shutil.copy(ARTIFACTS / f"{name}.png", ROOT / "docs" / "screenshots" / f"{name}.png")
