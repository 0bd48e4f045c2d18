"""Levels, top messages and time windows end to end: `push` -> real `rq worker`s -> mirror ->
`report`, `top`. Expected values are worked out by hand from the lines below."""

import datetime
import json
import random

import pytest

from logjobs import analysis, queries
from logjobs.models import db, open_database

from helpers import APP, OPEN_FAILED, UPSTREAM, WEB, analysed


@pytest.fixture
def scanned(cluster, tmp_path):
    logs = tmp_path / "logs"
    (logs / "api").mkdir(parents=True)
    (logs / "nginx").mkdir()
    (logs / "api" / "app.log").write_bytes(APP)
    (logs / "api" / "app2.log").write_bytes(APP.replace(b"10.0.0.7:8080", b"[fe80::1]:443"))
    (logs / "nginx" / "error.log").write_bytes(WEB)
    cluster.worker()
    cluster.run("push", "--wait", str(logs), check=True)
    cluster.run("mirror", "--once", check=True)
    return cluster, logs


def test_report_has_levels_and_windows(scanned):
    cluster, logs = scanned
    rows = {row["path"]: row for row in cluster.json("report", "--json")}
    app, web = rows[str(logs / "api" / "app.log")], rows[str(logs / "nginx" / "error.log")]
    # The INFO line that mentions ERROR is INFO: pattern counts and levels differ on purpose.
    assert (app["counts"], app["levels"]) == ({"ERROR": 3}, {"INFO": 2, "WARN": 1, "ERROR": 2})
    assert (web["counts"], web["levels"]) == ({"ERROR": 0}, {"ERROR": 2, "WARN": 1, "FATAL": 1})
    window = {
        row["path"]: row["levels"]
        for row in cluster.json(
            "report", "--json", "--since", "2024-05-01T12:01", "--until", "2024-05-01T12:02"
        )
    }
    assert window == {
        str(logs / "api" / "app.log"): {"ERROR": 1, "WARN": 1},
        str(logs / "api" / "app2.log"): {"ERROR": 1, "WARN": 1},
    }
    # The FATAL line is stamped 16:00+02:00, 14:00 UTC: before 16:01+02:00, like the first [error]
    # line.
    late = cluster.json("report", "--json", "--since", "2024-05-01T16:01+02:00")
    assert [(r["path"], r["levels"]) for r in late] == [
        (str(logs / "nginx" / "error.log"), {"ERROR": 1, "WARN": 1})
    ]
    out = cluster.run("report", "--since", "yesterday")
    assert (
        out.returncode == 2
        and "bad time 'yesterday'" in out.stderr
        and "Traceback" not in out.stderr
    )


def test_report_filters_by_path_and_totals(scanned):
    cluster, logs = scanned
    api = cluster.json("report", "--json", "--path", "*/api/*")
    assert [r["path"] for r in api] == [
        str(logs / "api" / "app.log"),
        str(logs / "api" / "app2.log"),
    ]
    assert cluster.json("report", "--json", "--path", str(logs / "api" / "app.log")) == api[:1]
    assert cluster.json("report", "--json", "--path", "*/nowhere/*") == []
    text = cluster.run("report", "--path", str(logs) + "/*", check=True).stdout.splitlines()
    header, rows, total = text[0], text[1:-1], text[-1]
    assert header.split() == ["STATUS", "TRIES", "COUNTS", "LEVELS", "PATH"] and len(rows) == 3
    # Columns as wide as their longest value: PATH starts where the header says, on every row.
    at = header.index("PATH")
    assert all(row[at:].startswith(str(logs)) for row in rows), text
    assert total == (
        "total: 3 file(s) (finished 3); counts ERROR=6; levels INFO=4 WARN=3 ERROR=6 FATAL=1"
    )
    assert "no file matches --path" in cluster.run("report", "--path", "/x*", check=True).stdout


def test_top_merges_files_and_filters(scanned):
    cluster, logs = scanned
    top = cluster.json("top", "--json")
    # Most frequent first; ties in the order first seen, files taken in path order. Every line
    # of a file's format is templated, whatever its level; the last line of nginx's error log is
    # of no format, so only its level (FATAL) templates it.
    assert [(m["count"], m["files"], m["level"], m["template"]) for m in top] == [
        (4, 2, "ERROR", UPSTREAM),
        (2, 2, "INFO", "started"),
        (2, 2, "WARN", "retry <NUM> of <NUM>"),
        (2, 2, "INFO", "retry after ERROR earlier"),
        (2, 1, "ERROR", OPEN_FAILED),
        (1, 1, "WARN", "an upstream response is buffered to a temporary file"),
        (1, 1, "FATAL", "db: cannot open <PATH>: <STR>"),
    ]
    assert (
        top[0]["example"]
        == "2024-05-01 12:00:02,200 ERROR api: upstream 10.0.0.7:8080 timed out after 3000 ms"
    )
    assert [m["count"] for m in cluster.json("top", "--json", "--path", "*/nginx/*")] == [2, 1, 1]
    since = cluster.json(
        "top", "--json", "--since", "2024-05-01T12:01", "--until", "2024-05-01T14:01"
    )
    assert [(m["count"], m["template"]) for m in since] == [
        (2, UPSTREAM),
        (2, "retry <NUM> of <NUM>"),
        (2, "retry after ERROR earlier"),
        (1, OPEN_FAILED),
        (1, "db: cannot open <PATH>: <STR>"),
    ]
    assert [m["level"] for m in cluster.json("top", "--json", "--level", "fatal")] == ["FATAL"]
    plain = cluster.run("top", "-n", "1", check=True).stdout.splitlines()
    assert plain[0].split() == ["COUNT", "FILES", "LEVEL", "TEMPLATE"]
    assert plain[1].split()[:3] == ["4", "2", "ERROR"] and plain[1].endswith(UPSTREAM)
    assert plain[2].strip().startswith("e.g. 2024-05-01 12:00:02,200 ERROR")


def test_top_over_files_adds_up_each_files_own_counts(monkeypatch):
    # It merged the files' analyses as the ranges of one file: past MAX_TEMPLATES templates in all,
    # a later file's were dropped; past the merge's bucket bounds, minutes became hours and a window
    # inside one hour found nothing.
    def words(i):
        return "".join(chr(97 + i // 26**k % 26) for k in range(3))

    many = analysis.analyse(
        b"".join(
            b"2024-01-01T00:00:00Z ERROR alpha %s broke\n" % words(i).encode() for i in range(1200)
        )
    )
    disk = analysis.analyse(b"2024-01-01T00:00:00Z ERROR zulu disk 7 full\n" * 5000)
    minutes = [
        analysis.analyse(
            b"".join(
                b"%s ERROR tick\n"
                % (base + datetime.timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:00Z").encode()
                for i in range(30_000)
            )
        )
        for base in (datetime.datetime(2024, 1, 1), datetime.datetime(2024, 3, 1))
    ]
    assert len(many.messages) == analysis.MAX_TEMPLATES and many.overflow == 200
    files = [("/a.log", many), ("/b.log", disk), ("/c.log", minutes[0]), ("/d.log", minutes[1])]
    monkeypatch.setattr(queries, "_analyses", lambda path_glob=None, path=None: iter(files))
    found = {m["template"]: (m["count"], m["files"]) for m in queries.top(limit=None)}
    assert (
        found["zulu disk <NUM> full"] == (5000, 1)
        and found["tick"] == (60_000, 2)
        and len(found) == 1002
    )
    window = queries.top(since="2024-01-01T00:30", until="2024-01-01T00:40", levels={"ERROR"})
    assert [(m["template"], m["count"]) for m in window] == [("tick", 10)]
    assert queries.top(since="2024-01-01T00:30", until="2024-01-01T02:00")[0]["count"] == 90


def test_split_file_analysis_equals_one_pass(cluster, tmp_path):
    """A big file scanned as byte ranges by several workers ends in exactly the single-pass
    analysis."""
    rnd = random.Random(7)
    lines = []
    for i in range(60_000):
        level = rnd.choice(["INFO", "INFO", "WARN", "ERROR", "FATAL", "DEBUG"])
        lines.append(
            b"2024-05-%02d %02d:%02d:%02d,000 %s svc%d: request %d from 10.1.%d.%d failed code=%d\n"
            % (
                1 + i // 20_000,
                i // 1000 % 24,
                i // 17 % 60,
                i % 60,
                level.encode(),
                rnd.randint(1, 5),
                i,
                rnd.randint(0, 255),
                rnd.randint(0, 255),
                rnd.choice([500, 502, 503]),
            )
        )
    data = b"".join(lines) + b"2024-05-03 23:59:59,000 ERROR svc1: last line without newline"
    path = tmp_path / "big.log"
    path.write_bytes(data)
    cluster.worker()
    cluster.worker()
    doc = cluster.json("push", "--wait", "--json", "--split-size", str(len(data) // 6), str(path))
    assert doc["enqueued"][0]["parts"] == 2
    cluster.run("mirror", "--once", check=True)
    row = cluster.report()[str(path)]
    assert row["parts"] == 2
    expected = analysed(data)
    assert row["levels"] == expected.levels
    top = cluster.json("top", "--json", "-n", "1000")
    assert [(m["level"], m["template"], m["count"], m["example"]) for m in top] == [
        (m["level"], m["template"], m["count"], m["example"]) for m in expected.top(1000)
    ]
    window = cluster.json(
        "report", "--json", "--since", "2024-05-02T05:00", "--until", "2024-05-02T07:30"
    )[0]
    assert window["levels"] == queries._window(
        expected.minutes, "2024-05-02T05:00", "2024-05-02T07:30"
    )


def test_a_log_spanning_months_is_analysed_in_hours_end_to_end(cluster, tmp_path):
    """Two months of minutes are too many buckets: the parts of a split scan, the mirror's merge,
    time windows, the timeline and its chart all work in hours, and a file in minutes joins them."""
    start = datetime.datetime(2024, 1, 1)
    data = b"".join(
        b"%s %s app: job %d done\n"
        % (
            (start + datetime.timedelta(minutes=m)).isoformat().encode(),
            b"ERROR" if m % 7 == 0 else b"INFO",
            m,
        )
        for m in range(60 * 24 * 60)
    )
    logs = tmp_path / "logs"  # not the cluster's own (its Redis server's log is a log too)
    logs.mkdir()
    (logs / "long.log").write_bytes(data)
    (logs / "app.log").write_bytes(APP)
    cluster.worker()
    cluster.worker()
    doc = cluster.json("push", "--wait", "--json", "--split-size", str(len(data) // 3), str(logs))
    assert {d["path"]: d["parts"] for d in doc["enqueued"]}[str(logs / "long.log")] == 2
    cluster.run("mirror", "--once", check=True)
    expected = analysed(data)
    assert expected.width() == 13
    rows = {row["path"]: row for row in cluster.json("report", "--json")}
    assert (
        rows[str(logs / "long.log")]["levels"]
        == expected.levels
        == {"INFO": 74_057, "ERROR": 12_343}
    )
    window = cluster.json(
        "report", "--json", "--since", "2024-02-01T10:30", "--until", "2024-02-01T12:00"
    )
    assert {r["path"]: r["levels"] for r in window} == {  # whole hours: 10:00 to 12:00
        str(logs / "long.log"): queries._window(expected.minutes, "2024-02-01T10", "2024-02-01T12")
    }
    assert sum(window[0]["levels"].values()) == 120
    open_database(cluster.db)
    try:
        assert queries.level_timeline(since="2024-05-01T00:00") == {  # app.log alone: minutes
            "2024-05-01T12:00": {"INFO": 1, "ERROR": 1},
            "2024-05-01T12:01": {"ERROR": 1, "WARN": 1},
            "2024-05-01T12:02": {"INFO": 1},
        }
        assert queries.level_timeline(
            since="2024-02-29T23:00"
        ) == {  # with long.log's last hour: hours
            "2024-02-29T23": {"ERROR": 8, "INFO": 52},
            "2024-05-01T12": {"INFO": 2, "ERROR": 2, "WARN": 1},
        }
        everything = queries.level_timeline()
        assert len(everything) == 60 * 24 + 1 and everything["2024-01-01T00"] == {
            "ERROR": 9,
            "INFO": 51,
        }
        chart = queries.level_chart(everything)  # Jan 1 to May 1: 122 days, 18 weeks
        assert (
            chart["unit"] == "week"
            and len(chart["labels"]) == 18
            and sum(map(sum, (s["counts"] for s in chart["series"]))) == 86_400 + 5
        )
    finally:
        db.close()


def test_counts_only_scans_have_no_levels(cluster, tmp_path):
    (tmp_path / "a.log").write_bytes(APP)
    cluster.worker()
    cluster.run("push", "--wait", "--counts-only", str(tmp_path / "a.log"), check=True)
    row = cluster.report()[str(tmp_path / "a.log")]
    assert (row["counts"], row["levels"]) == ({"ERROR": 3}, {})
    assert cluster.json("top", "--json") == []
    # Analysed now, unlike its last scan: scanned whole again, not continued.
    doc = cluster.json("push", "--wait", "--json", str(tmp_path / "a.log"))
    assert doc["enqueued"][0]["reason"] == "analysed, unlike its last scan"


def test_minute_parses_iso_and_spans():
    assert queries.minute("2024-05-01") == "2024-05-01T00:00"
    assert queries.minute("2024-05-01T12:30:59Z") == "2024-05-01T12:30"
    assert queries.minute("2024-05-01T12:30+02:00") == "2024-05-01T10:30"
    assert queries.minute("90m", now=1714564800) == "2024-05-01T10:30"  # 12:00 UTC minus 90 minutes
    with pytest.raises(ValueError, match="bad time"):
        queries.minute("last tuesday")


def test_level_chart_picks_a_unit_and_fills_gaps():
    minutes = {"2024-05-01T12:00": {"ERROR": 2}, "2024-05-01T12:03": {"INFO": 1, "ERROR": 1}}
    chart = queries.level_chart(minutes)
    assert chart["unit"] == "minute" and chart["labels"] == [
        f"2024-05-01T12:0{i}" for i in range(4)
    ]
    assert chart["series"] == [
        {"level": "INFO", "counts": [0, 0, 0, 1]},
        {"level": "ERROR", "counts": [2, 0, 0, 1]},
    ]
    days = queries.level_chart({"2024-05-01T00:00": {"WARN": 1}, "2024-06-30T23:59": {"WARN": 2}})
    assert (
        days["unit"] == "day"
        and len(days["labels"]) == 61
        and sum(days["series"][0]["counts"]) == 3
    )
    assert json.dumps(queries.level_chart({}))
    hours = queries.level_chart({"2024-05-01T10": {"ERROR": 1}, "2024-05-01T12": {"ERROR": 2}})
    assert hours["unit"] == "hour" and hours["labels"] == [
        "2024-05-01T10",
        "2024-05-01T11",
        "2024-05-01T12",
    ]
    assert hours["series"] == [{"level": "ERROR", "counts": [1, 0, 2]}]


@pytest.mark.parametrize(
    "first, last, unit, bars, label",
    [
        ("2024-01-01T00:00", "2024-05-01T00:00", "week", 18, "2024-01-01"),  # a Monday
        ("2024-01-03T00:00", "2024-12-31T23:59", "week", 53, "2024-01-01"),
        ("2020-02-10T05:00", "2024-05-01T00:00", "month", 52, "2020-02"),
        ("2005-06-03T15:42", "2026-12-07T00:00", "year", 22, "2005"),
    ],
)
def test_level_chart_has_a_readable_number_of_bars_for_any_span(first, last, unit, bars, label):
    chart = queries.level_chart({first: {"INFO": 2}, last: {"ERROR": 1, "-": 4}})
    assert (chart["unit"], len(chart["labels"]), chart["labels"][0]) == (unit, bars, label)
    assert chart["series"] == [
        {"level": "INFO", "counts": [2] + [0] * (bars - 1)},
        {"level": "ERROR", "counts": [0] * (bars - 1) + [1]},
        {"level": "no level", "counts": [0] * (bars - 1) + [4]},
    ]
    assert chart["outside"] is None  # no few lines far from the rest here: each end is a third


def test_level_chart_leaves_out_a_few_lines_dated_far_from_the_rest():
    minutes = {f"2024-05-{day:02d}T12:00": {"INFO": 50, "ERROR": 1} for day in range(1, 29)}
    minutes["1970-01-01T00:00"] = {"ERROR": 1}  # a clock that was not set
    minutes["2099-12-31T23"] = {"WARN": 2}
    chart = queries.level_chart(minutes)
    assert (chart["unit"], len(chart["labels"])) == ("day", 28)
    assert chart["outside"] == {"lines": 3, "first": "1970-01-01T00:00", "last": "2099-12-31T23"}
    assert sum(sum(s["counts"]) for s in chart["series"]) == 28 * 51
    # Many lines far away are no outliers: they are charted (and so, then, are the two of 2099,
    # which would narrow the span less than OUTLIER_NARROWING times).
    minutes["1970-01-01T00:00"] = {"ERROR": 100}
    chart = queries.level_chart(minutes)
    assert (chart["unit"], chart["labels"][0], chart["labels"][-1]) == ("year", "1970", "2099")
    assert chart["outside"] is None
