"""The scan job under real `rq worker` processes: counting, priority, retries, bad input."""

import gzip
import json
import os
import shutil
import sqlite3
import subprocess
import time

import fakeredis
import psutil
import pytest

from logjobs import events, wire
from logjobs.defaults import DONE_KEY, EVENTS_KEY
from logjobs.jobs import Heartbeat, Reporter
from logjobs.rqsafe import Job
from logjobs.scanner import ScanResult

from helpers import BIN, grep_count


def test_counts_reach_the_report_like_grep(cluster, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_bytes(
        b"INFO ok\nERROR a\nERROR b ERROR\r\nwarn\x00ERROR\n\xffERROR last"
    )
    (logs / "empty.log").write_bytes(b"")
    with gzip.open(logs / "old.log.1", "wb") as f:
        f.write(b"ERROR zipped\nFATAL x\n" * 1000)
    cluster.worker()
    cluster.worker()
    out = cluster.run(
        "push", "--wait", "--pattern", "ERROR", "--pattern", "FATAL", str(logs), check=True
    )
    assert "finished 3, failed 0" in out.stdout
    rows = cluster.report()
    assert set(rows) == {str(logs / n) for n in ("app.log", "empty.log", "old.log.1")}
    assert rows[str(logs / "app.log")]["counts"] == {
        "ERROR": grep_count(str(logs / "app.log")),
        "FATAL": 0,
    }
    assert rows[str(logs / "app.log")]["counts"]["ERROR"] == 4
    assert rows[str(logs / "old.log.1")]["counts"] == {"ERROR": 1000, "FATAL": 1000}
    assert rows[str(logs / "empty.log")]["counts"] == {"ERROR": 0, "FATAL": 0}
    for row in rows.values():
        assert row["status"] == "finished" and row["attempts"] == 1 and row["error"] is None
        assert row["queue"] == "default" and row["job_id"].startswith("lj-")
        assert row["started_at"] <= row["ended_at"]
    # Three files on two workers: one job of two, one of one. A job sends `started` for its first
    # file only; the other's result says when its scan began, so its duration is known all the same.
    jobs = {}
    for path, row in rows.items():
        jobs.setdefault(row["job_id"], []).append(path)
    assert sorted(map(len, jobs.values())) == [1, 2]
    with sqlite3.connect(cluster.db) as c:
        for job_id, paths in jobs.items():
            states = c.execute(
                "select path, state, duration from history where job_id = ?", (job_id,)
            ).fetchall()
            assert sorted(s for _, s, _ in states) == ["finished"] * len(paths) + ["queued"] * len(
                paths
            ) + ["started"]
            assert all(d is not None and d >= 0 for _, s, d in states if s == "finished")


def test_high_priority_runs_before_low(cluster, tmp_path):
    files = {}
    for queue in ("low", "high"):
        for i in range(4):
            path = tmp_path / f"{queue}{i}.log"
            path.write_text("ERROR\n")
            files[str(path)] = queue
    cluster.run(
        "push", "--priority", "low", *[p for p, q in files.items() if q == "low"], check=True
    )
    cluster.run(
        "push", "--priority", "high", *[p for p, q in files.items() if q == "high"], check=True
    )
    cluster.worker()  # started only now: both queues are full when it looks
    cluster.wait_for(
        lambda: (
            all(r["status"] == "finished" for r in cluster.report().values())
            and len(cluster.report()) == 8
        ),
        what="all scans finished",
    )
    rows = cluster.report()
    order = sorted(rows.values(), key=lambda r: r["started_at"])
    assert [r["queue"] for r in order] == ["high"] * 4 + ["low"] * 4


def test_transient_failure_is_retried_at_its_interval_and_finishes(cluster, tmp_path):
    # A timeout is an error that heals: the first attempt reads a 64 GB sparse file and is killed by
    # its 1 s timeout; by the time the retry runs, the file has been replaced by a small one.
    path = tmp_path / "slow.log"
    with open(path, "wb") as f:
        f.truncate(64 << 30)
    cluster.worker()
    cluster.mirror()
    job_id = cluster.json(
        "push", "--json", "--split-size", "0", "--timeout", "1", "--retry-intervals", "6", str(path)
    )["enqueued"][0]["job_id"]
    # Attempt 1 is "started" for only a second; any sign of it will do.
    cluster.wait_for(
        lambda: cluster.report().get(str(path), {}).get("attempts", 0) >= 1, what="attempt 1"
    )
    small = tmp_path / "small.log"
    small.write_text("ERROR healed\nok\n")
    os.replace(small, path)
    row = cluster.wait_for(
        lambda: (r := cluster.report()[str(path)])["status"] == "finished" and r,
        timeout=60,
        what="the retry to finish",
    )
    assert row["attempts"] == 2 and row["counts"] == {"ERROR": 1} and row["error"] is None
    history = [h for h in cluster.history(job_id)]
    states = [h["state"] for h in history]
    assert states == ["queued", "started", "scheduled", "started", "finished"], states
    waited = _seconds(history[3]["at"]) - _seconds(history[2]["at"])
    # RQ scores scheduled jobs in whole seconds (timegm), so a 6 s interval can end up to 1 s early.
    assert waited >= 5.0, f"retry ran {waited:.1f}s after the failure; its interval is 6s"
    assert "JobTimeoutException" in history[2]["error"]


def test_a_job_out_of_retries_names_its_file_once(cluster, tmp_path):
    # An error that could heal, with no retry left: the job's own failure is the file's reason.
    path = tmp_path / "emptied.log"
    with open(path, "wb") as f:
        f.truncate(64 << 30)  # sparse: read for many seconds
    worker = psutil.Process(cluster.worker().pid)
    push = subprocess.Popen(
        [
            os.path.join(BIN, "logjobs"),
            "push",
            "--json",
            "--wait",
            "--split-size",
            "0",
            "--retries",
            "0",
            str(path),
        ],
        env=cluster.env,
        stdout=subprocess.PIPE,
        text=True,
    )

    def reading():  # the work-horse has the file open: its scan is under way
        try:
            return any(
                f.path == str(path) for horse in worker.children() for f in horse.open_files()
            )
        except psutil.NoSuchProcess:
            return False

    cluster.wait_for(reading, what="the scan")
    os.truncate(path, 0)  # emptied while it is read: "truncated or rewritten while it was scanned"
    out, _ = push.communicate(timeout=120)
    assert push.returncode == 1
    outcome = json.loads(out)["outcome"][0]  # the reason, without the path beside it again
    assert (outcome["path"], outcome["error"]) == (
        str(path),
        "truncated or rewritten while it was scanned",
    )


def _seconds(iso):
    from datetime import datetime

    return datetime.fromisoformat(iso.rstrip("Z")).timestamp()


def test_permanent_failures_fail_at_once_with_a_reason(cluster, tmp_path, conn):
    bad = tmp_path / "bad"
    bad.mkdir()
    os.mkfifo(bad / "fifo.log")
    os.symlink("loop.log", bad / "loop.log")
    (bad / "corrupt.log.gz").write_bytes(
        gzip.compress(b"ERROR\n" * 1000)[:-20] + b"garbage-garbage-garb"
    )
    (bad / "later-a-dir.log").write_text("ERROR\n")
    (bad / "later-gone.log").write_text("ERROR\n")
    (bad / "good.log").write_text("ERROR\n")
    out = cluster.run("push", "--json", str(bad), check=True)
    # Changed after the push, before any worker looks.
    os.remove(bad / "later-a-dir.log")
    os.mkdir(bad / "later-a-dir.log")
    os.remove(bad / "later-gone.log")
    cluster.worker()
    started = time.monotonic()
    cluster.wait_for(
        lambda: (
            len([r for r in cluster.report().values() if r["status"] in ("finished", "failed")])
            == 6
        ),
        timeout=30,
        what="all six files to end",
    )
    assert time.monotonic() - started < 20, "permanent failures must not wait out retry intervals"
    rows = {os.path.basename(p): r for p, r in cluster.report().items()}
    expected = {
        "fifo.log": "not a regular file",
        "loop.log": "symlink",
        "corrupt.log.gz": "corrupt",
        "later-a-dir.log": "directory",
        "later-gone.log": "no such file",
    }
    for name, reason in expected.items():
        row = rows[name]
        assert row["status"] == "failed" and row["attempts"] == 1, (name, row)
        assert reason in row["error"].lower() and "\n" not in row["error"], (name, row["error"])
        assert "Traceback" not in row["error"]
    assert rows["good.log"]["status"] == "finished"
    assert out.returncode == 0
    # Mended, and its job requeued by hand (rq-dashboard's Requeue): it is scanned. (It was skipped
    # as done, which a failure for good had counted as: RQ said the job finished, the row stayed
    # failed.)
    os.remove(bad / "fifo.log")
    (bad / "fifo.log").write_text("ERROR one\nERROR two\n")
    Job.fetch(rows["fifo.log"]["job_id"], connection=conn).requeue()
    row = cluster.wait_for(
        lambda: (r := cluster.report()[str(bad / "fifo.log")])["status"] == "finished" and r,
        what="the mended file's row",
    )
    assert (row["counts"], row["attempts"], row["error"]) == ({"ERROR": 2}, 2, None)


def test_a_file_the_worker_may_not_read_fails_at_once(cluster, tmp_path):
    """Permission denied, under a real `rq worker` that file permissions apply to: root without the
    capabilities that let it read anything (the other tests' workers run as root and read all)."""
    setpriv = shutil.which("setpriv")
    if os.getuid() != 0 or setpriv is None:
        pytest.skip(
            "needs root and util-linux's setpriv, to start a worker without CAP_DAC_OVERRIDE"
        )
    (tmp_path / "ok.log").write_text("ERROR\n")
    secret = tmp_path / "secret.log"
    secret.write_text("ERROR\n")
    secret.chmod(0)
    cluster.spawn(
        [
            setpriv,
            "--bounding-set=-dac_override,-dac_read_search",
            os.path.join(BIN, "rq"),
            "worker",
            "high",
            "default",
            "low",
        ],
        "w-no-override",
    )
    started = time.monotonic()
    out = cluster.run("push", "--wait", str(tmp_path / "ok.log"), str(secret), timeout=60)
    assert time.monotonic() - started < 20, "a permanent failure must not wait out retry intervals"
    assert out.returncode == 1 and "finished 1, failed 1" in out.stdout, out.stdout + out.stderr
    rows = {os.path.basename(p): r for p, r in cluster.report().items()}
    assert (rows["ok.log"]["status"], rows["ok.log"]["counts"]) == ("finished", {"ERROR": 1})
    assert (rows["secret.log"]["status"], rows["secret.log"]["attempts"]) == ("failed", 1)
    # The row names its file already: its reason does not again (issue 21).
    assert rows["secret.log"]["error"] == "permission denied"
    failed_line = next(line for line in out.stdout.splitlines() if "failed:" in line)
    assert failed_line.strip() == f"failed: {secret}: permission denied"


def test_wait_exits_non_zero_when_a_file_failed(cluster, tmp_path):
    (tmp_path / "ok.log").write_text("ERROR\n")
    os.mkfifo(tmp_path / "pipe.log")
    cluster.worker()
    out = cluster.run("push", "--wait", str(tmp_path / "ok.log"), str(tmp_path / "pipe.log"))
    assert out.returncode == 1
    assert "finished 1, failed 1" in out.stdout
    assert (
        f"  failed: {tmp_path / 'pipe.log'}: not a regular file (FIFO)" in out.stdout.splitlines()
    )


def test_node_jobs_run_only_on_that_nodes_workers(cluster, tmp_path):
    from logjobs.queues import node_worker_queues

    logs = {node: tmp_path / node for node in ("a", "b")}
    for folder in logs.values():
        folder.mkdir()
        for i in range(6):
            (folder / f"{i}.log").write_text("ERROR\n" * i)
    cluster.worker(*node_worker_queues("a"), name="host-a")
    # Node b's worker by the wrapper, started by its full path as a unit starts it, PATH without its
    # venv, and told the Redis URL by LOGJOBS_REDIS_URL alone.
    env = {k: v for k, v in cluster.env.items() if k != "RQ_REDIS_URL"}
    cluster.spawn(
        [os.path.join(BIN, "logjobs"), "worker", "--node", "b", "--name", "host-b"],
        "host-b",
        env=dict(env, PATH="/usr/bin:/bin"),
    )
    for node, folder in logs.items():
        cluster.run(
            "push",
            "--node",
            node,
            "--batch-files",
            "1",
            "--priority",
            "low",
            str(folder),
            check=True,
        )
    cluster.wait_for(
        lambda: len([r for r in cluster.report().values() if r["status"] == "finished"]) == 12,
        what="12 finished scans",
    )
    for path, row in cluster.report().items():
        node = "a" if f"{os.sep}a{os.sep}" in path else "b"
        assert row["worker"] == f"host-{node}" and row["queue"] == f"{node}.low", (path, row)
    doc = cluster.json("status", "--json")
    assert doc["queues"]["low"] == 12 and doc["nodes"] == {
        "a": {"high": 0, "default": 0, "low": 6},
        "b": {"high": 0, "default": 0, "low": 6},
    }
    assert "  a: high 0  default 0  low 6" in cluster.run("status", check=True).stdout.splitlines()
    # A node no worker serves yet: its jobs show as waiting, though not in the shared queues.
    cluster.run(
        "push", "--node", "c", "--priority", "high", "--force", str(logs["a"] / "1.log"), check=True
    )
    assert cluster.json("status", "--json")["waiting"] == {
        "high": 0,
        "default": 0,
        "low": 0,
        "c.high": 1,
    }


def test_push_wait_waits_for_files_an_earlier_push_has_in_flight(cluster, tmp_path):
    """`push --wait && use the results`: a file skipped as already queued is not done yet either."""
    from logjobs.queues import node_worker_queues

    big = tmp_path / "big.log"
    big.write_bytes(b"ERROR x\nINFO y\n" * 4000)
    cluster.run(
        "push", "--node", "n1", "--split-size", "20000", str(big), check=True
    )  # 2 parts, no worker yet
    waiting = subprocess.Popen(
        [os.path.join(BIN, "logjobs"), "push", "--wait", "--json", "--node", "n1", str(big)],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    assert waiting.poll() is None  # still waiting: nothing has scanned the file
    cluster.worker(*node_worker_queues("n1"))
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    doc = json.loads(out)
    assert doc["enqueued"] == [] and [s["path"] for s in doc["skipped"]] == [str(big)]
    assert doc["outcome"] == [
        {
            "path": str(big),
            "job_id": doc["skipped"][0]["job_id"],
            "status": "finished",
            "counts": None,
            "error": None,
            "skipped": True,
        }
    ]
    assert cluster.report()[str(big)]["counts"] == {"ERROR": 4000}


def test_a_long_scan_in_a_batch_gets_its_started_from_the_heartbeat():
    """The Reporter alone, on fakeredis: a batch sends `started` for its first file at once; a later
    file only if the heartbeat beats while it is scanned, and else its outcome says when it began.
    """
    conn = fakeredis.FakeRedis()
    report = Reporter(conn, "j1", 1, "w1")
    result = {"counts": {"ERROR": 0}, "lines": None, "bytes": 0}
    report.started([wire.Task(p) for p in ("a", "b", "c")])
    with Heartbeat(conn, "j1", "w1", interval=0.05, on_beat=report.announce):
        with report.scanning("a", 0):
            pass
        report.finished("a", 0, result)
        with report.scanning("b", 0):
            b_began = time.time()
            time.sleep(0.5)  # ten beats
        report.finished("b", 0, result)
    with report.scanning("c", 0):  # quick: no beat while it is scanned (the heartbeat has stopped)
        pass
    report.finished("c", 0, result)
    report.flush()
    sent = [
        (e.path, e.state, e.at, e.started_at)
        for i, f in conn.xrange(EVENTS_KEY)
        for e in events.read(i, f)
    ]
    assert [(p, s) for p, s, _, _ in sent] == [
        ("a", "started"),
        ("b", "started"),
        ("a", "finished"),
        ("b", "finished"),
        ("c", "finished"),
    ]
    b_started = sent[1]
    assert abs(b_started[2] - b_began) < 0.05, "announced with the time the scan began"
    assert [s for _, state, _, s in sent if state == "finished"][:2] == [
        None,
        None,
    ]  # their started was sent
    c_started_at = sent[4][3]
    assert c_started_at is not None and c_started_at <= sent[4][2]


def test_a_file_done_is_recorded_without_its_analysis():
    """The record of a file done (for a retry, `push --wait` and the reconciler) is kept as long as
    RQ keeps a failed job: 30 days. It held the file's whole analysis, often more than its event's
    rest."""
    conn = fakeredis.FakeRedis()
    report = Reporter(conn, "j1", 1, "w1")
    message = {
        "level": "ERROR",
        "template": "boom",
        "count": 2,
        "example": "x" * 9000,
        "minutes": {},
    }
    result = {
        "counts": {"ERROR": 2},
        "lines": 9,
        "bytes": 90,
        "compression": None,
        "tail": False,
        "analysis": {
            "levels": {"ERROR": 2},
            "minutes": {},
            "messages": [message],
            "overflow": 0,
            "format": None,
        },
    }
    report.finished("a", 0, result)
    report.flush()
    assert json.loads(conn.hget(DONE_KEY + "j1", "a")) == {
        "result": {
            "counts": {"ERROR": 2},
            "lines": 9,
            "bytes": 90,
            "compression": None,
            "tail": False,
        }
    }
    (sent,) = [e for i, f in conn.xrange(EVENTS_KEY) for e in events.read(i, f)]
    # The database gets it all (what a result holds by default may go unsaid).
    assert ScanResult.from_dict(wire.plain(sent.result)) == ScanResult.from_dict(result)
