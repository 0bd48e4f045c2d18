"""The analysis finds levels, minutes and templates where each format puts them, in bounded memory,
and gives the same Analysis whatever the pieces it is fed and however a file is cut into ranges.

Expected values below are worked out by hand from the files in tests/corpus/formats.
"""

import datetime
import json
import os
import random
import re
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logjobs import analysis
from logjobs.analysis import Analysis, Analyzer, Message, analyse

FORMATS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "formats")


def corpus(name: str) -> bytes:
    with open(os.path.join(FORMATS, name), "rb") as f:
        return f.read()


def line(name: str, number: int) -> str:
    """Line `number` (from 1) of a corpus file, as an example reads."""
    return corpus(name).decode().split("\n")[number - 1]


def templates(a: Analysis) -> dict:
    return {key: (msg.count, msg.example, msg.minutes) for key, msg in a.messages.items()}


# -- one file per format, expectations worked out by hand


def test_nginx_access_log_has_no_levels_but_pattern_lines_are_templated_with_their_time():
    a = analyse(corpus("nginx_access.log"), ['" 500 '])
    assert a.levels == {} and a.minutes == {}
    assert templates(a) == {
        (None, "GET /api/users/<NUM> 500"): (
            2,
            line("nginx_access.log", 2),
            {"2024-05-01T12:00": 1, "2024-05-01T12:02": 1},
        ),
        (None, "POST /api/orders 500"): (
            1,
            line("nginx_access.log", 3),
            {"2024-05-01T12:01": 1},
        ),  # +0200
    }


def test_nginx_error_log():
    a = analyse(corpus("nginx_error.log"))
    assert a.levels == {"INFO": 1, "WARN": 1, "ERROR": 2, "FATAL": 1}
    assert a.minutes == {
        "2024-05-01T12:03": {"ERROR": 2},
        "2024-05-01T12:04": {"WARN": 1},
        "2024-05-01T12:05": {"FATAL": 1, "INFO": 1},
    }
    assert templates(a) == {
        (
            "ERROR",
            "<NUM>#<NUM>: *<NUM> connect() failed (<NUM>: Connection refused) while connecting to "
            "upstream, "
            "client: <IP>, server: example.com, request: <STR>, upstream: <STR>, host: <STR>",
        ): (2, line("nginx_error.log", 1), {"2024-05-01T12:03": 2}),
        ("FATAL", "<NUM>#<NUM>: *<NUM> open() <STR> failed (<NUM>: Permission denied)"): (
            1,
            line("nginx_error.log", 4),
            {"2024-05-01T12:05": 1},
        ),
    }


def test_syslog_rfc3164_with_and_without_pri():
    a = analyse(corpus("syslog_rfc3164.log"), year=2024)
    # <34> is 34 % 8 = 2 (crit), <13> 5 (notice), <11> 3 (err); "error:" after host and process;
    # "Accepted" and "[12345.678]" stand where a level would, but are none.
    assert a.levels == {"INFO": 1, "ERROR": 2, "FATAL": 1}
    assert a.minutes == {
        "2024-10-11T22:14": {"FATAL": 1, "INFO": 1},
        "2024-10-11T22:15": {"ERROR": 1},
        "2024-10-11T22:16": {"ERROR": 1},
    }
    assert templates(a) == {
        ("FATAL", "su: <STR> failed for lonvick on <PATH>"): (
            1,
            line("syslog_rfc3164.log", 1),
            {"2024-10-11T22:14": 1},
        ),
        ("ERROR", "app[<NUM>]: disk <PATH> failed after <NUM> retries"): (
            1,
            line("syslog_rfc3164.log", 3),
            {"2024-10-11T22:15": 1},
        ),
        ("ERROR", "PAM: Authentication failure for root from <IP>"): (
            1,
            line("syslog_rfc3164.log", 4),
            {"2024-10-11T22:16": 1},
        ),
    }


def test_syslog_rfc3164_without_a_year_has_no_minutes():
    a = analyse(corpus("syslog_rfc3164.log"))
    assert a.levels == {"INFO": 1, "ERROR": 2, "FATAL": 1}
    assert a.minutes == {}
    assert all(msg.minutes == {} for msg in a.messages.values())


def test_syslog_rfc3164_across_new_year_takes_december_from_the_year_before():
    lines = (
        b"Dec 31 23:58:00 host app[1]: error: disk x\nDec 31 23:59:00 host app[1]: error: disk y\n"
        b"Jan  1 00:01:00 host app[1]: error: disk z\n"
    )
    analyzer = Analyzer([], last_change=datetime.datetime(2025, 1, 1, 0, 30))  # the file's mtime
    analyzer.feed(lines)
    assert analyzer.finish().minutes == {
        "2024-12-31T23:58": {"ERROR": 1},
        "2024-12-31T23:59": {"ERROR": 1},
        "2025-01-01T00:01": {"ERROR": 1},
    }
    # Within a day past the last change (local stamps, UTC mtime), a stamp keeps the year.
    analyzer = Analyzer([], last_change=datetime.datetime(2025, 3, 1, 9, 0))
    analyzer.feed(
        b"Mar  1 20:00:00 host app[1]: error: late\nMar  3 10:00:00 host app[1]: error: later\n"
    )
    assert set(analyzer.finish().minutes) == {"2025-03-01T20:00", "2024-03-03T10:00"}


def test_syslog_rfc5424():
    a = analyse(corpus("syslog_rfc5424.log"))
    assert a.levels == {"INFO": 1, "ERROR": 1, "FATAL": 1}  # <165>: 5, <34>: 2, <11>: 3
    assert a.minutes == {
        "2003-10-11T22:14": {"INFO": 1, "FATAL": 1},
        "2003-08-24T12:14": {"ERROR": 1},
    }  # 05:14 at -07:00
    assert templates(a) == {
        ("FATAL", "<STR> failed for lonvick on <PATH>"): (
            1,
            line("syslog_rfc5424.log", 2),
            {"2003-10-11T22:14": 1},
        ),
        ("ERROR", "%% It's time to make the do-nuts."): (
            1,
            line("syslog_rfc5424.log", 3),
            {"2003-08-24T12:14": 1},
        ),
    }


def test_python_default_format():
    a = analyse(corpus("python_default.log"))
    assert a.levels == {"DEBUG": 1, "INFO": 1, "WARN": 1, "ERROR": 2, "FATAL": 1}
    assert a.minutes == {}
    assert templates(a) == {
        ("ERROR", "app.db:query failed after <NUM> attempts: timeout"): (
            2,
            line("python_default.log", 3),
            {},
        ),
        ("FATAL", "root:out of memory, <NUM> MB left"): (1, line("python_default.log", 4), {}),
    }


def test_python_asctime_formats_and_a_zone():
    a = analyse(corpus("python_asctime.log"), ["slow request"])
    assert a.levels == {"INFO": 1, "WARN": 1, "ERROR": 3}
    assert a.minutes == {
        "2024-05-01T12:00": {"INFO": 1, "ERROR": 2},
        "2024-05-01T12:01": {"WARN": 1},
        "2024-05-01T10:01": {"ERROR": 1},
    }  # 12:01:30+02:00
    assert templates(a) == {
        ("ERROR", "app.db: connection to <IP> refused after <NUM> retries"): (
            2,
            line("python_asctime.log", 2),
            {"2024-05-01T12:00": 1, "2024-05-01T10:01": 1},
        ),
        ("ERROR", "connection to <IP> refused after <NUM> retries"): (
            1,
            line("python_asctime.log", 3),
            {"2024-05-01T12:00": 1},
        ),
        ("WARN", "slow request GET <PATH> took <NUM> ms"): (
            1,
            line("python_asctime.log", 4),
            {"2024-05-01T12:01": 1},
        ),
    }


def test_java_log_with_a_stack_trace():
    a = analyse(corpus("java.log"), ["Connection refused"])
    assert a.levels == {
        "INFO": 1,
        "WARN": 1,
        "ERROR": 2,
    }  # no level in the trace, even "(ERROR 2003)"
    assert a.minutes == {"2024-05-01T12:00": {"INFO": 1, "WARN": 1, "ERROR": 2}}
    assert templates(a) == {
        ("ERROR", "com.example.api.OrderController - Request failed for order <UUID>"): (
            1,
            line("java.log", 2),
            {"2024-05-01T12:00": 1},
        ),
        (None, "Caused by: java.sql.SQLException: Connection refused (ERROR <NUM>)"): (
            1,
            line("java.log", 6),
            {},
        ),
        (
            "ERROR",
            "[http-nio-<NUM>-exec-<NUM>] c.e.api.OrderController: Request failed for order <HEX>",
        ): (1, line("java.log", 10), {"2024-05-01T12:00": 1}),
    }


def test_json_lines():
    a = analyse(corpus("jsonl.log"))
    assert a.levels == {"INFO": 2, "WARN": 1, "ERROR": 3}  # pino 50 and 30; the last line has none
    # epoch 1714564800 is 2024-05-01T12:00:00Z; 14:00:10.500+02:00 is 12:00 UTC
    assert a.minutes == {
        "2024-05-01T12:00": {"INFO": 1, "ERROR": 2, "WARN": 1},
        "2024-05-01T12:01": {"ERROR": 1, "INFO": 1},
    }
    assert templates(a) == {
        ("ERROR", "db query failed after <NUM> retries"): (
            2,
            line("jsonl.log", 2),
            {"2024-05-01T12:00": 2},
        ),
        ("ERROR", "unhandled rejection"): (1, line("jsonl.log", 5), {"2024-05-01T12:01": 1}),
    }


def test_logfmt():
    a = analyse(corpus("logfmt.log"))
    assert a.levels == {"INFO": 1, "WARN": 1, "ERROR": 3}
    assert a.minutes == {
        "2024-05-01T12:00": {"INFO": 1, "ERROR": 1},
        "2024-05-01T12:01": {"WARN": 1},
        "2024-05-01T12:02": {"ERROR": 1},
    }
    assert templates(a) == {
        ("ERROR", "connection refused"): (
            2,
            line("logfmt.log", 2),
            {"2024-05-01T12:00": 1, "2024-05-01T12:02": 1},
        ),
        ("ERROR", "no timestamp first"): (1, line("logfmt.log", 4), {}),
    }


def test_apache_error_log():
    a = analyse(corpus("apache_error.log"))
    assert a.levels == {"INFO": 1, "WARN": 1, "ERROR": 2}
    assert a.minutes == {
        "2024-05-01T12:00": {"ERROR": 1, "INFO": 1},
        "2024-05-01T12:01": {"ERROR": 1, "WARN": 1},
    }
    assert templates(a) == {
        (
            "ERROR",
            "[pid <NUM>:tid <NUM>] [client <IP>] AH00126: Invalid URI in request GET <PATH> "
            "HTTP/<NUM>",
        ): (1, line("apache_error.log", 1), {"2024-05-01T12:00": 1}),
        ("ERROR", "[client <IP>] client denied by server configuration: <PATH>"): (
            1,
            line("apache_error.log", 3),
            {"2024-05-01T12:01": 1},
        ),
    }


def test_a_level_word_in_the_message_is_not_the_level():
    a = analyse(corpus("level_in_message.log"))
    # INFO and DEBUG stand first; "worker: retry after ERROR", "plain line ... error:", "job 7
    # ERROR-prone" and the indented line have none; "Error:" opening a line is its level.
    assert a.levels == {"DEBUG": 1, "INFO": 1, "ERROR": 1}
    assert a.minutes == {"2024-05-01T12:00": {"INFO": 1, "DEBUG": 1}}
    assert templates(a) == {
        ("ERROR", "could not open config"): (1, "Error: could not open config", {})
    }


def test_crlf_lines_read_like_lf_lines():
    lf = analyse(corpus("python_asctime.log"), ["slow request"])
    crlf = analyse(corpus("python_asctime.log").replace(b"\n", b"\r\n"), ["slow request"])
    assert crlf == lf


# -- templates


@pytest.mark.parametrize(
    "message, template",
    [
        (
            "Connection to 10.0.0.7:5432 refused after 3 retries",
            "Connection to <IP> refused after <NUM> retries",
        ),
        ("job 123e4567-e89b-12d3-a456-426614174000 failed", "job <UUID> failed"),
        (
            "bad pointer 0xdeadBEEF for request a3f9c2d17b8e4f10",
            "bad pointer <HEX> for request <HEX>",
        ),
        (
            "peer [2001:db8::1]:443 reset, fallback fe80::1ff:fe23:4567:890a unreachable",
            "peer <IP> reset, fallback <IP> unreachable",
        ),
        (
            """user "bob smith" said 'hello there' and can't log in""",
            "user <STR> said <STR> and can't log in",
        ),
        (r"cannot read /var/lib/app/data.db nor C:\Temp\app.log", "cannot read <PATH> nor <PATH>"),
        (
            "webhook https://hooks.example.com/x?id=5 for ops@example.com failed",
            "webhook <URL> for <EMAIL> failed",
        ),
        (
            "retry at 2024-05-01T12:30:00Z in 250ms, v2 worker-12",
            "retry at <TS> in <NUM>ms, v2 worker-<NUM>",
        ),
    ],
)
def test_variable_parts_are_masked(message, template):
    a = analyse(f"2024-05-01T12:00:00Z ERROR {message}\n".encode())
    assert list(a.messages) == [("ERROR", template)]


def test_a_pattern_line_keeps_its_level_and_lines_with_a_pattern_and_error_count_once():
    a = analyse(b"INFO user 7 logged in\nERROR user 8 locked out\nuser 9 logged in\n", ["user"])
    assert {key: msg.count for key, msg in a.messages.items()} == {
        ("INFO", "user <NUM> logged in"): 1,
        ("ERROR", "user <NUM> locked out"): 1,
        (None, "user <NUM> logged in"): 1,
    }


@pytest.fixture(params=["stringzilla", "stdlib"])
def kernel(request, monkeypatch):
    """Both ways of finding pattern hits: with stringzilla, and with the stdlib alone."""
    if request.param == "stdlib":
        monkeypatch.setattr(analysis, "_sz", None)
    elif analysis._sz is None:
        pytest.skip("stringzilla is not installed")
    return request.param


def test_pattern_alternatives_and_the_empty_pattern(kernel):
    data = b"a foo\nb bar\nc baz\n"
    assert [t for _, t in analyse(data, ["foo\nbaz"]).messages] == ["a foo", "c baz"]
    assert [t for _, t in analyse(data, [""]).messages] == ["a foo", "b bar", "c baz"]


def test_templates_past_the_cap_count_as_overflow():
    data = b"ERROR alpha\nERROR beta\nERROR gamma\nERROR delta\nERROR alpha\nERROR epsilon\n"
    a = analyse(data, max_templates=3)
    assert {t: msg.count for (_, t), msg in a.messages.items()} == {
        "alpha": 2,
        "beta": 1,
        "gamma": 1,
    }
    assert a.overflow == 2
    one_byte_pieces = Analyzer((), max_templates=3)
    for i in range(len(data)):
        one_byte_pieces.feed(data[i : i + 1])
    assert one_byte_pieces.finish() == a
    # ranges that each stay under the cap merge into exactly the single pass, its overflow included
    cut = data.index(b"ERROR delta")
    first, second = analyse(data[:cut], max_templates=3), analyse(data[cut:], max_templates=3)
    assert first.overflow == second.overflow == 0
    assert first.merge(second, max_templates=3) == a


def test_full_caches_are_emptied_without_losing_what_a_step_found_in_them(monkeypatch):
    # A step (a chunk, or the open line) looks up its stamps and messages all at once: some already
    # cached, some new. When the new ones do not fit, the cache empties, but for the ones found.
    pieces = [
        b"".join(b"2025-01-01T00:%02d:00Z ERROR job %d failed\n" % (m, m) for m in range(4)),
        b"2025-01-01T00:00:00Z ERROR job 0 failed\n2025-01-01T00:04:00Z ERROR job 4 failed\n",
        b"2025-01-01T00:05:00Z WARN late\n2025-01-01T00:01:00Z ERROR job 1 failed",
    ]
    expected = analyse(b"".join(pieces))
    monkeypatch.setattr(analysis, "_MINUTE_CACHE", 4)
    monkeypatch.setattr(analysis, "_TEMPLATE_CACHE", 4)
    analyzer = Analyzer()
    for piece in pieces:
        analyzer.feed(piece)
    got = analyzer.finish()
    assert got == expected
    assert got.messages[("ERROR", "job <NUM> failed")].count == 7


# -- the Analysis value


def test_top_restricted_to_minutes_and_levels():
    a = analyse(corpus("python_asctime.log"), ["slow request"])
    db = "app.db: connection to <IP> refused after <NUM> retries"
    assert [(r["template"], r["count"]) for r in a.top()] == [
        (db, 2),
        ("connection to <IP> refused after <NUM> retries", 1),
        ("slow request GET <PATH> took <NUM> ms", 1),
    ]
    assert [(r["template"], r["count"]) for r in a.top(since="2024-05-01T12:01")] == [
        ("slow request GET <PATH> took <NUM> ms", 1)
    ]
    tz = datetime.timezone(datetime.timedelta(hours=2))
    assert [
        (r["template"], r["count"])
        for r in a.top(
            since=datetime.datetime(2024, 5, 1, 12, 0, tzinfo=tz), until="2024-05-01T11:00"
        )
    ] == [(db, 1)]
    assert [r["level"] for r in a.top(levels=["WARN"])] == ["WARN"]
    assert a.top(n=1)[0] == {
        "level": "ERROR",
        "template": db,
        "count": 2,
        "example": line("python_asctime.log", 2),
    }


def test_to_dict_is_json_and_reads_back():
    a = analyse(b"".join(corpus(name) for name in sorted(os.listdir(FORMATS))), ["500"], year=2024)
    d = json.loads(json.dumps(a.to_dict()))
    assert d == a.to_dict()
    assert Analysis.from_dict(d) == a


def test_merge_leaves_its_operands_alone():
    a = Analysis(
        {"ERROR": 1}, {"m": {"ERROR": 1}}, {("ERROR", "x"): Message(1, "ERROR x", {"m": 1})}
    )
    b = Analysis.from_dict(a.to_dict())
    merged = a.merge(b)
    assert merged.messages[("ERROR", "x")] == Message(2, "ERROR x", {"m": 2}) and merged.levels == {
        "ERROR": 2
    }
    assert (
        a
        == b
        == Analysis(
            {"ERROR": 1}, {"m": {"ERROR": 1}}, {("ERROR", "x"): Message(1, "ERROR x", {"m": 1})}
        )
    )


# -- exactness: ranges and pieces


def generated_log(seed: int, lines: int) -> bytes:
    """Mixed formats, varying numbers and times, long lines, blank and CRLF lines, maybe no final
    newline."""
    rnd = random.Random(seed)
    samples = [ln for name in sorted(os.listdir(FORMATS)) for ln in corpus(name).split(b"\n") if ln]
    phrases = [
        "db timeout",
        "cache refused",
        "worker alpha died",
        "",
        "ERROR in handler",
        "Warn: info only",
    ]
    out = []
    for _ in range(lines):
        kind = rnd.random()
        if kind < 0.4:
            out.append(rnd.choice(samples))
        elif kind < 0.9:
            day, hour, minute = rnd.randint(1, 3), rnd.randint(0, 23), rnd.randint(0, 59)
            stamp = f"2024-05-{day:02d}T{hour:02d}:{minute:02d}:07Z"
            level = rnd.choice(
                ["INFO", "ERROR", "FATAL", "WARN", "[error]", "level=debug", "Err:", "trace"]
            )
            message = rnd.choice(phrases)
            out.append(
                f"{stamp} host-{rnd.randint(1, 3)} {level} {message} "
                f"id={rnd.randint(0, 10**6)}".encode()
            )
        elif kind < 0.95:
            out.append(b"")
        elif kind < 0.995:
            out.append(rnd.choice(samples) + b"\r")
        else:  # longer than LINE_HEAD, sometimes
            out.append(b"2024-05-01T00:00:00Z ERROR huge " + b"refused " * rnd.randint(200, 1500))
    data = b"\n".join(out)
    return data if rnd.random() < 0.5 else data + b"\n"


def feed(data: bytes, cuts, patterns=("ERROR", "refused\nalpha"), year=2024) -> Analysis:
    analyzer = Analyzer(patterns, year)
    bounds = [0, *sorted(cuts), len(data)]
    for lo, hi in zip(bounds, bounds[1:]):
        analyzer.feed(data[lo:hi])
    return analyzer.finish()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ranges_merge_into_the_single_pass(seed, kernel):
    data = generated_log(seed, 25_000)
    rnd = random.Random(seed)
    whole = feed(data, [])
    assert whole.overflow == 0 and whole.levels and whole.messages
    starts = [m.end() for m in re.finditer(b"\n", data)]
    cuts = sorted(rnd.sample(starts, 6))
    merged = None
    for lo, hi in zip([0, *cuts], [*cuts, len(data)]):
        part = data[lo:hi]
        one = feed(
            part, sorted(rnd.sample(range(len(part)), min(len(part), 20)))
        )  # in ragged pieces, too
        merged = one if merged is None else merged.merge(one)
    assert merged == whole
    assert merged.to_dict() == whole.to_dict()


@pytest.mark.parametrize(
    "max_levels, max_messages, width",
    [
        (5000, 10**6, 13),  # too many (minute, level) counts: hours
        (10**6, 5000, 13),  # too many (template, minute) counts: hours
        (400, 10**6, 10),  # too many even in hours: days
        (10, 10, 10),  # days, however many
    ],
)
def test_time_buckets_coarsen_alike_in_one_pass_and_in_merged_ranges(
    monkeypatch, max_levels, max_messages, width
):
    data = generated_log(4, 25_000)
    minutes = feed(data, [])
    assert minutes.width() == 16
    monkeypatch.setattr(analysis, "MAX_LEVEL_BUCKETS", max_levels)
    monkeypatch.setattr(analysis, "MAX_MESSAGE_BUCKETS", max_messages)
    whole = feed(data, [])
    # the finest unit within the bounds: the minutes' counts, summed per hour or day
    assert whole.width() == width and whole == minutes.coarsened(width)
    if width == 13:
        assert not minutes._fits() and whole._fits()
    assert max(whole.minutes) == max(minutes.minutes)[:width]
    rnd = random.Random(width + max_levels)
    cuts = sorted(rnd.sample([m.end() for m in re.finditer(b"\n", data)], 6))
    merged = None
    for lo, hi in zip([0, *cuts], [*cuts, len(data)]):
        one = feed(data[lo:hi], sorted(rnd.sample(range(hi - lo), 20)))
        merged = one if merged is None else merged.merge(one)
    assert merged == whole


def test_buckets_of_an_hour_or_a_day_count_whole_in_a_time_window():
    a = Analysis(
        {"ERROR": 3},
        {"2024-05-01T11": {"ERROR": 1}, "2024-05-01T12": {"ERROR": 2}},
        {("ERROR", "x"): Message(3, "ERROR x", {"2024-05-01T11": 1, "2024-05-01T12": 2})},
    )
    assert [r["count"] for r in a.top(since="2024-05-01T12:30")] == [2]  # the 12:00 bucket, whole
    assert [r["count"] for r in a.top(until="2024-05-01T12:30")] == [1]
    assert a.top(since="2024-05-01T13:00") == []
    assert analysis.within("2024-05-01", "2024-05-01T23:59", "2024-05-02T00:00")
    assert not analysis.within("2024-05-01", None, "2024-05-01T23:59")
    assert a.merge(Analysis({"ERROR": 1}, {"2024-05-01T12:05": {"ERROR": 1}})).minutes == {
        "2024-05-01T11": {"ERROR": 1},
        "2024-05-01T12": {"ERROR": 3},
    }


def test_one_byte_pieces_agree_with_one_piece():
    """Each line then goes through the one-line path; in one piece all but the first go through the
    bulk path."""
    data = generated_log(9, 300)
    assert feed(data, range(1, len(data))) == feed(data, [])


SAMPLE = generated_log(5, 3000)
WHOLE = feed(SAMPLE, [])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, len(SAMPLE)), max_size=30))
def test_any_pieces_give_the_same_analysis(cuts):
    assert feed(SAMPLE, cuts) == WHOLE


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"2024-05-01T12:00:00Z",
                b"ERROR",
                b"info",
                b"[warn]",
                b" ",
                b":",
                b"\t",
                b"<13>",
                b'{"level":"error","ts":1714564800}',
                b"x",
                b"10.0.0.1",
                b"\r",
                b"-",
                b"level=err",
                b"\xff",
                b"refused",
            ]
        ),
        max_size=60,
    ),
    st.lists(st.integers(0, 400), max_size=10),
)
def test_odd_lines_read_the_same_in_bulk_and_one_at_a_time(fragments, cuts):
    data = b"\n".join(b"".join(fragments[i : i + 4]) for i in range(0, len(fragments), 3))
    assert feed(data, cuts) == feed(data, []) == feed(data, range(1, len(data)))


# -- memory


def minute_log(days: int) -> bytes:
    """An ERROR line a minute for `days` days."""
    start = datetime.datetime(2024, 1, 1)
    return b"".join(
        b"%s ERROR job %d failed\n"
        % ((start + datetime.timedelta(minutes=m)).isoformat().encode(), m)
        for m in range(days * 24 * 60)
    )


def test_a_log_spanning_months_has_hours():
    # 86,400 minutes are too many (MAX_LEVEL_BUCKETS), 1,440 hours are not.
    a = analyse(minute_log(60), ["ERROR"])
    assert a.levels == {"ERROR": 86_400} and len(a.minutes) == 1440
    assert a.minutes["2024-01-01T00"] == {"ERROR": 60} and max(a.minutes) == "2024-02-29T23"
    assert a.messages[("ERROR", "job <NUM> failed")].minutes["2024-02-29T23"] == 60


def test_memory_does_not_grow_with_the_span(monkeypatch):
    # The bounds made small, so that a short log reaches them: twice the span takes no more memory.
    for name, value in (
        ("MAX_LEVEL_BUCKETS", 2000),
        ("MAX_MESSAGE_BUCKETS", 2000),
        ("_RAW_KEYS", 2000),
        ("_MINUTE_CACHE", 1000),
        ("_TEMPLATE_CACHE", 1000),
    ):
        monkeypatch.setattr(analysis, name, value)

    def peak(days):
        data = minute_log(days)
        analyzer = Analyzer(["ERROR"])
        tracemalloc.start()
        try:
            for i in range(0, len(data), 2**16):
                analyzer.feed(data[i : i + 2**16])
            a = analyzer.finish()
            bytes_at_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(a.minutes) == days * 24  # hours
        return bytes_at_peak

    assert peak(8) < 1.2 * peak(4)


def test_many_long_error_lines_keep_memory_bounded():
    # Each message was remembered whole (up to 20,000 of them) to template it once: 553 MB for 600
    # MB of 100 KB lines.
    rnd = random.Random(7)
    lines = [
        b"2024-05-01T12:00:00Z ERROR " + rnd.randbytes(25_000).hex().encode() + b"\n"
        for _ in range(600)
    ]
    analyzer = Analyzer(["ERROR"], 2024)
    tracemalloc.start()
    try:
        for start in range(0, len(lines), 20):
            analyzer.feed(b"".join(lines[start : start + 20]))  # a 1 MB piece, as a scan feeds it
        a = analyzer.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert a.levels == {"ERROR": 600}
    assert peak < 16 * 2**20  # the 30 MB of lines, made before, are not counted


@pytest.mark.parametrize(
    "pattern, line", [("E", b"E\n"), ("", b"\n"), ("GET", b"1 GET /\n"), ("ERROR", b"ERROR\n")]
)
def test_short_lines_keep_memory_bounded(pattern, line):
    # A megabyte piece was analysed at once, with a few hundred bytes of lists per line it holds:
    # 154 MB for a piece of "E\n" lines matching the pattern.
    piece = line * (2**19 // len(line))
    analyzer = Analyzer([pattern], 2024)
    tracemalloc.start()
    try:
        analyzer.feed(piece)
        a = analyzer.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
    assert sum(m.count for m in a.messages.values()) + a.overflow == 2**19 // len(line)


def test_a_100_mb_line_keeps_memory_bounded():
    piece = b"abcdefghijklmnopqrstuvwxyz 0123456789 " * (2**20 // 38)
    analyzer = Analyzer(["NEEDLE"], 2024)
    tracemalloc.start()
    try:
        analyzer.feed(b"2024-05-01T12:00:00Z INFO huge ")
        for i in range(100):
            analyzer.feed(piece)
            if i == 50:
                analyzer.feed(b"NEE")  # the pattern straddles two pieces
                analyzer.feed(b"DLE")
        analyzer.feed(b"\n2024-05-01T12:01:00Z ERROR after the huge line")
        a = analyzer.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
    assert a.levels == {"INFO": 1, "ERROR": 1}
    assert a.minutes == {"2024-05-01T12:00": {"INFO": 1}, "2024-05-01T12:01": {"ERROR": 1}}
    (huge, huge_msg), (after, _) = a.messages.items()
    assert huge[0] == "INFO" and huge[1].startswith("huge abcdefghijklmnopqrstuvwxyz <NUM> abc")
    assert (
        len(huge[1]) < analysis.TEMPLATE_BYTES and len(huge_msg.example) == analysis.EXAMPLE_CHARS
    )
    assert after == ("ERROR", "after the huge line")


@pytest.mark.parametrize("piece", [1, 3, 7, 1 << 20])
def test_ignore_case_templates_lines_holding_a_pattern_in_any_case(piece):
    """A pattern line is one holding the pattern as `grep -i` finds it: ASCII case folded (also
    where the pattern straddles two pieces), other bytes as they are."""
    data = (
        b"2024-05-01T12:00:00Z INFO retry after TimeOut of db\n"
        b"2024-05-01T12:00:01Z INFO all fine\n"
        b"2024-05-01T12:00:02Z INFO \xc3\x89T\xc3\x89 timeout\n"
        b"2024-05-01T12:00:03Z INFO \xc3\xa9t\xc3\xa9 is not \xc3\x89T\xc3\x89 under LC_ALL=C\n"
    )

    def templates(patterns, ignore_case):
        analyzer = Analyzer(patterns, ignore_case=ignore_case)
        for i in range(0, len(data), piece):
            analyzer.feed(data[i : i + piece])
        return {key: m.count for key, m in analyzer.finish().messages.items()}

    assert templates(["timeout"], False) == {("INFO", "\u00c9T\u00c9 timeout"): 1}
    assert templates(["timeout"], True) == {
        ("INFO", "retry after TimeOut of db"): 1,
        ("INFO", "\u00c9T\u00c9 timeout"): 1,
    }
    assert templates(["\u00e9t\u00e9"], True) == {
        ("INFO", "\u00e9t\u00e9 is not \u00c9T\u00c9 under LC_ALL=C"): 1
    }


TOKENS = st.sampled_from(
    [
        "\t",
        "0x1f",
        "00x0",
        "x",
        "\x01",
        "\x01x",
        "a",
        "Z",
        "v2",
        "x509",
        "utf8",
        "0",
        "7",
        "42",
        "007",
        "-",
        "_",
        ".",
        ":",
        "/",
        " ",
        "  ",
        "=",
        ",",
        "(",
        ")",
        "[",
        "]",
        '"',
        "'",
        "@",
        "0x",
        "ff",
        "deadbeef",
        "DEADBEEF1",
        "2024-05-01T12:00:00Z",
        "12:00:01.5",
        "Sun Jul 17 03:46:45 2005",
        "10.0.0.1",
        "::1",
        "http://h/1",
        "a@b.co",
        "blk_-123",
        "ERROR",
        "\u00e9",
        "GET",
        "HTTP/1.1",
        "200",
        "404",
    ]
)
MESSAGES = st.lists(st.lists(TOKENS, max_size=14).map("".join), min_size=1, max_size=30)


@settings(max_examples=500, deadline=None)
@given(MESSAGES)
def test_templates_by_shape_are_those_of_each_message(messages):
    """Templates are looked up by the shape of a message (its digits all 0): exactly the
    templates masking each message gives, digits kept in a template (v2) included."""
    srcs = [m.encode() for m in messages]
    analyzer = Analyzer()
    for _ in range(2):  # and again, from the caches
        assert analyzer._templates(srcs) == [analysis._mask_all([src])[0] for src in srcs]
    requests = [b'GET /%s HTTP/1.1" %s' % (src, src[-3:].rjust(3, b"5")) for src in srcs]
    fmt = analysis.formats.builtin("clf")
    requesting = Analyzer(format=fmt)
    for _ in range(2):
        assert requesting._format_templates(requests) == analysis._request_all(requests)
