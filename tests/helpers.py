"""What several test modules share: logs with known counts, grep as the reference, and checks that
the database agrees with RQ."""

import os
import sqlite3
import subprocess
import sys

from logjobs import analysis, formats
from logjobs.rqsafe import statuses

BIN = os.path.dirname(sys.executable)


def analysed(data, patterns=("ERROR",)):
    """The Analysis a scan of a file holding `data` makes: read in the format its head fits."""
    fmt = formats.detect(data[: formats.DETECT_BYTES], formats.BUILTIN)
    return analysis.analyse(data, patterns, format=fmt)


def grep_count(path, pattern="ERROR"):
    out = subprocess.run(
        ["grep", "-a", "-c", "-F", "--", pattern, path],
        capture_output=True,
        env={"LC_ALL": "C", "PATH": os.environ["PATH"]},
    )
    return int(out.stdout)


def corpus(root, small=200, sparse=6, sparse_bytes=1 << 30):
    """Small logs with known counts, and sparse files that take a few seconds each to scan."""
    root.mkdir()
    expected = {}
    for i in range(small):
        path = root / f"small-{i:03}.log"
        path.write_text("ERROR x\nINFO y\n" * (i % 11) + "tail ERROR")
        expected[str(path)] = i % 11 + 1
    for i in range(sparse):
        path = root / f"sparse-{i}.log"
        with open(path, "wb") as f:
            f.truncate(sparse_bytes)
        expected[str(path)] = 0
    return expected


def final_rows(cluster):
    return {p: r for p, r in cluster.report().items() if r["status"] in ("finished", "failed")}


def assert_exactly_once(cluster, expected, conn):
    """Every file finished with its right counts, the database agreeing with RQ's view of every
    job."""
    rows = cluster.report()
    assert set(rows) == set(expected)
    rq_states = dict(zip(rows, statuses(conn, [r["job_id"] for r in rows.values()])))
    assert set(rq_states.values()) == {"finished"}, [
        i for i in rq_states.items() if i[1] != "finished"
    ][:5]
    wrong = {
        p: (r["status"], r["counts"], r["error"])
        for p, r in rows.items()
        if r["status"] != "finished" or r["counts"] != {"ERROR": expected[p]}
    }
    assert not wrong, list(wrong.items())[:5]
    with sqlite3.connect(cluster.db) as c:
        finals = c.execute(
            "select path, part, count(distinct attempt) from history where state = 'finished' "
            "and worker != 'reconcile' group by path, part"
        ).fetchall()
    return rows, finals


# Logs of an app and of nginx, and the templates their messages make (test_queries, test_web).
APP = b"""\
2024-05-01 12:00:01,100 INFO api: started
2024-05-01 12:00:02,200 ERROR api: upstream 10.0.0.7:8080 timed out after 3000 ms
2024-05-01 12:01:03,300 ERROR api: upstream 10.0.0.9:8080 timed out after 2500 ms
2024-05-01 12:01:04,400 WARN api: retry 3 of 5
2024-05-01 12:02:05,500 INFO api: retry after ERROR earlier
"""
WEB = b"""\
2024/05/01 14:00:00 [error] 311#0: *5 open() "/srv/www/favicon.ico" failed (2: No such file or directory), client: 192.168.1.5, server: example.org
2024/05/01 14:03:00 [error] 311#0: *9 open() "/srv/www/robots.txt" failed (2: No such file or directory), client: 192.168.1.6, server: example.org
2024/05/01 14:03:30 [warn] 311#0: *9 an upstream response is buffered to a temporary file
2024-05-01T16:00:00+02:00 FATAL db: cannot open /var/lib/db/q.db: 'disk I/O error'
"""
# APP is read with the log4j format (its logger, "api:", is no part of the message), WEB with
# nginx's error-log format (its "pid#tid: *connection" neither), but for its last line.
UPSTREAM = "upstream <IP> timed out after <NUM> ms"
OPEN_FAILED = (
    "open() <STR> failed (<NUM>: No such file or directory), client: <IP>, server: example.org"
)
