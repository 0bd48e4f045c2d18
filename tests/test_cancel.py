"""`logjobs cancel` and `logjobs forget`, against a real Redis, real `rq worker`s and the mirror:
what is taken back is taken back, and nothing else is touched."""

import collections
import json

import pytest

from logjobs import events, rows
from logjobs.defaults import CANCELED, FINISHED, FORGOTTEN
from logjobs.models import History, Scan, db, open_database
from logjobs.rowstore import PeeweeRows

IDENTITY = {
    "dev": 1,
    "ino": 2,
    "size": 6,
    "mtime_ns": 0,
    "compression": None,
    "head_len": 6,
    "head": "h",
}
RESULT = {"counts": {"ERROR": 1}, "lines": 1, "bytes": 6, "compression": None, "tail": False}


def _files(tmp_path, n, text="ERROR\n"):
    paths = []
    for i in range(n):
        path = tmp_path / "logs" / f"{i}.log"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text * (i + 1))
        paths.append(str(path))
    return paths


def _sparse(path, size=64 << 30):
    """A file whose scan reads zeros for minutes: a cancel lands mid-scan."""
    with open(path, "wb") as f:
        f.truncate(size)
    return str(path)


def test_a_waiting_scan_is_canceled_and_a_later_push_scans_it_again(cluster, tmp_path, conn):
    a, b = _files(tmp_path, 2)
    cluster.run("push", "--priority", "low", a, check=True)  # no worker yet: they wait
    cluster.run("push", "--priority", "low", b, check=True)
    done = cluster.json("cancel", "--json", a)
    assert done["canceled"] == done["queued"] == [a] and not done["unknown"]
    rows_ = cluster.report()
    assert rows_[a]["status"] == "canceled" and rows_[b]["status"] == "queued"
    assert rows_[a]["error"].startswith("canceled by ") and "@" in rows_[a]["error"]
    cluster.worker()
    cluster.wait_for(lambda: cluster.report()[b]["status"] == "finished", what="b to finish")
    assert cluster.report()[a]["status"] == "canceled"  # its job never ran
    # A later push scans it again, as usual, and says why it is scanned whole.
    doc = cluster.json("push", "--wait", "--json", a)
    assert doc["outcome"][0]["status"] == "finished"
    assert doc["enqueued"][0]["reason"] == (
        "pushed before, with no finished scan on record (it failed, was canceled or forgotten)"
    )
    row = cluster.report()[a]
    assert row["status"] == "finished" and row["counts"] == {"ERROR": 1}


def test_a_running_scan_is_stopped_and_the_worker_goes_on(cluster, tmp_path, conn):
    big = _sparse(tmp_path / "huge.log")
    small = _files(tmp_path, 1)[0]
    cluster.worker()
    cluster.run("push", "--split-size", "0", big, check=True)
    cluster.wait_for(
        lambda: cluster.report()[big]["status"] == "started", what="the big scan to start"
    )
    done = cluster.json("cancel", "--json", big)
    assert done["stopped"] == [big], done
    cluster.wait_for(
        lambda: cluster.report()[big]["status"] == "canceled", timeout=30, what="canceled"
    )
    # Its scan stopped (the worker is free at once for the next job), and is not retried.
    out = cluster.run("push", "--wait", small, check=True, timeout=30)
    assert "finished 1" in out.stdout
    row = cluster.report()[big]
    assert row["status"] == "canceled" and row["attempts"] == 1


def test_a_batch_skips_the_files_taken_back_and_scans_the_rest(cluster, tmp_path):
    paths = _files(tmp_path, 6)
    cluster.run("push", *paths, check=True)  # batches of small files, waiting
    jobs = collections.Counter(row["job_id"] for row in cluster.report().values())
    assert all(n >= 3 for n in jobs.values()), jobs  # each with files not canceled
    done = cluster.json("cancel", "--json", paths[1], paths[4])
    assert done["queued"] == sorted([paths[1], paths[4]]), done
    cluster.worker()
    cluster.wait_for(
        lambda: all(r["status"] in ("finished", "canceled") for r in cluster.report().values()),
        what="the batch to end",
    )
    rows_ = cluster.report()
    for i, path in enumerate(paths):
        if i in (1, 4):
            assert rows_[path]["status"] == "canceled" and rows_[path]["counts"] == {}
        else:
            assert rows_[path]["status"] == "finished"
            assert rows_[path]["counts"] == {"ERROR": i + 1}
    # Taken back from a job that ran on, they are not in flight: a push takes them.
    out = cluster.run("push", "--wait", paths[1], check=True)
    assert "finished 1" in out.stdout


def test_a_waiting_batch_taken_back_a_file_at_a_time_leaves_its_queue(cluster, tmp_path, conn):
    paths = _files(tmp_path, 6)
    cluster.run("push", "--node", "nowhere", *paths, check=True)  # no worker reads its queues
    jobs = {path: row["job_id"] for path, row in cluster.report().items()}
    assert len(set(jobs.values())) < len(paths)  # batches of several files
    queue = "rq:queue:nowhere.default"
    left = set(paths)
    for path in paths:
        done = cluster.json("cancel", "--json", path)
        assert done["queued"] == [path]
        left.discard(path)
        # A job leaves its queue once nothing of it is left to scan.
        assert conn.llen(queue) == len({jobs[p] for p in left}), path
    assert {conn.hget(f"rq:job:{j}", "status") for j in jobs.values()} == {b"canceled"}
    assert {r["status"] for r in cluster.report().values()} == {"canceled"}


def test_globs_directories_and_job_ids_and_what_stays(cluster, tmp_path):
    paths = _files(tmp_path, 3)
    cluster.worker("high")  # `low` waits
    cluster.run("push", "--priority", "high", "--wait", paths[0], check=True)
    finished = cluster.report()[paths[0]]
    cluster.run("push", "--priority", "low", paths[1], check=True)
    other = tmp_path / "other.log"
    other.write_text("ERROR\n")
    cluster.run("push", "--priority", "low", "--batch-files", "1", paths[2], str(other), check=True)
    done = cluster.run("cancel", "--json", str(tmp_path / "logs") + "/", "/nowhere/*.log")
    assert done.returncode == 1 and "nothing pushed matches /nowhere/*.log" in done.stderr
    doc = json.loads(done.stdout)
    assert doc["ended"] == [paths[0]]  # finished: left as it ended
    assert doc["canceled"] == doc["queued"] == paths[1:]
    rows_ = cluster.report()
    assert rows_[paths[0]] == finished
    assert rows_[str(other)]["status"] == "queued"  # not named: untouched, in its own job
    assert cluster.run("cancel", "--json", str(tmp_path / "*.log")).returncode == 0
    assert cluster.report()[str(other)]["status"] == "canceled"
    again = cluster.run("cancel", rows_[str(other)]["job_id"])  # by job id: ended already
    assert again.returncode == 0 and "left as they ended: 1 file(s)" in again.stdout


def test_forget_drops_rows_and_history_and_the_next_push_scans_whole(cluster, tmp_path):
    a, b = _files(tmp_path, 2)
    cluster.worker()
    cluster.run("push", "--wait", a, b, check=True)
    cluster.run("mirror", "--once", check=True)
    out = cluster.run("forget", a)  # no mirror running: the mirror drops it when it runs
    assert out.returncode == 0 and "once `logjobs mirror` runs" in out.stdout, out
    rows_ = cluster.report()
    assert a not in rows_ and rows_[b]["status"] == "finished"
    assert cluster.run("show", a).returncode != 0
    # Its record went too: appended to, it is scanned whole, not from where the last scan ended.
    with open(a, "a") as f:
        f.write("ERROR again\n")
    cluster.run("push", "--wait", a, check=True)
    row = cluster.report()[a]
    assert row["counts"] == {"ERROR": 2} and row["scanned"] == row["bytes"]
    # With a mirror running, it waits for it; a target that names nothing: exit 1.
    cluster.mirror()
    cluster.wait_for(
        lambda: cluster.run("status").returncode == 0, what="the mirror to be seen running"
    )
    out = cluster.run("forget", str(tmp_path / "logs"), "/nowhere")
    assert out.returncode == 1 and "forgot 2 file(s)" in out.stdout, out
    assert "no file in the database matches /nowhere" in out.stderr


def test_forget_leaves_a_file_being_scanned(cluster, tmp_path):
    (path,) = _files(tmp_path, 1)
    cluster.run("push", path, check=True)
    cluster.run("mirror", "--once", check=True)
    out = cluster.run("forget", path)
    assert out.returncode == 1 and "still being scanned" in out.stderr
    assert path in cluster.report()


# -- how the mirror applies them ------------------------------------------------------------------


@pytest.fixture
def database(tmp_path):
    handle = open_database(str(tmp_path / "s.db"))
    yield handle
    handle.close()


def _push(job="j1", path="/l/a.log", parts=1):
    return [
        events.Event(
            job,
            path,
            "queued",
            part=p,
            parts=parts,
            queue="default",
            patterns=["ERROR"],
            identity=IDENTITY if p == 0 else None,
        )
        for p in range(parts)
    ]


@pytest.mark.parametrize("store", [None, PeeweeRows()])
def test_a_cancel_ends_what_has_not_ended_only(database, store):
    # Two parts: one finished, one running, when the cancel comes.
    evs = [
        *_push(parts=2),
        events.Event("j1", "/l/a.log", "started", 1, 0),
        events.Event("j1", "/l/a.log", FINISHED, 1, 0, result=RESULT),
        events.Event("j1", "/l/a.log", "started", 1, 1),
        events.Event("j1", "/l/a.log", CANCELED, 1, 0, error="canceled by x@h"),
        events.Event("j1", "/l/a.log", CANCELED, 1, 1, error="canceled by x@h"),
        # what the stopped run's own end, or RQ's, says later changes nothing
        events.Event("j1", "/l/a.log", "failed", 1, 1, error="stopped", worker="reconcile"),
        events.Event("j1", "/l/a.log", "failed", 1, 1, error="killed"),
    ]
    for n, event in enumerate(evs):
        event.stream_id = f"1-{n}"
    with db.atomic():
        rows.apply(evs, store)
    row = Scan.get(Scan.path == "/l/a.log")
    assert row.status == CANCELED and row.error == "canceled by x@h" and row.ended_at
    # A scan that did finish as it was canceled is finished.
    late = events.Event("j1", "/l/a.log", FINISHED, 1, 1, result=RESULT, stream_id="1-99")
    with db.atomic():
        rows.apply([late], store)
    assert Scan.get(Scan.path == "/l/a.log").status == FINISHED


@pytest.mark.parametrize("store", [None, PeeweeRows()])
def test_forgotten_goes_with_its_history_and_a_push_after_it_stays(database, store):
    evs = [
        *_push(),
        events.Event("j1", "/l/a.log", FINISHED, 1, 0, result=RESULT),
        *_push("j2", "/l/b.log"),
        events.Event("", "/l/a.log", FORGOTTEN),
        events.Event("", "/l/never.log", FORGOTTEN),
        *_push("j3", "/l/b.log"),  # b pushed again: b stays
    ]
    for n, event in enumerate(evs):
        event.stream_id = f"1-{n}"
    with db.atomic():
        scanned = rows.apply(evs[:2], store)
        assert scanned["/l/a.log"] is not None
    with db.atomic():
        scanned = rows.apply(evs[2:], store)
    assert scanned["/l/a.log"] is None  # its record goes from Redis too
    assert [r.path for r in Scan.select()] == ["/l/b.log"]
    assert {h.path for h in History.select()} == {"/l/b.log"}
    # Forgotten, then pushed again, in one batch: the new row and its history stay.
    again = [
        events.Event("", "/l/b.log", FORGOTTEN, stream_id="2-0"),
        *_push("j4", "/l/b.log"),
    ]
    again[1].stream_id = "2-1"
    with db.atomic():
        rows.apply(again, store)
    assert Scan.get(Scan.path == "/l/b.log").job_id == "j4"
    assert [h.stream_id for h in History.select()] == ["2-1"]


def test_a_forget_or_cancel_event_cannot_be_a_push():
    for state in (CANCELED, FORGOTTEN):
        event = events.Event("j", "/a", state, parts=1, queue="default")
        with pytest.raises(ValueError):
            event.check()


def test_the_cli_says_what_forget_and_cancel_do():
    from click.testing import CliRunner

    from logjobs.cli import cli

    for command in ("cancel", "forget"):
        out = CliRunner().invoke(cli, [command, "--help"])
        assert out.exit_code == 0 and "Example:" in out.output, out.output
