"""The mirror: event ordering, crash and restart, two mirrors at once, reconciliation with RQ."""

import sqlite3
import time

import pytest

from logjobs import events
from logjobs.defaults import EVENTS_KEY
from logjobs.mirror import RECONCILE, apply
from logjobs.models import History, Scan, db, open_database


@pytest.fixture
def database(tmp_path):
    database = open_database(str(tmp_path / "unit.db"))
    yield database
    database.close()


def feed(*evs):
    for i, e in enumerate(evs):
        e.stream_id = e.stream_id or f"{time.time_ns()}-{i}"
    with db.atomic():
        apply(list(evs))


def row(path="/l/a.log"):
    return Scan.get(Scan.path == path)


def push_event(job_id, path="/l/a.log"):
    return events.Event(job_id, "queued", path=path, queue="high", patterns=["ERROR"])


def test_events_apply_in_attempt_order_and_late_ones_are_ignored(database):
    feed(push_event("j1"), events.Event("j1", "started", 1, worker="a"))
    feed(events.Event("j1", "queued", 1, worker="keeper", error="worker a died"),
         events.Event("j1", "started", 2, worker="b"))
    # Attempt 1's worker comes back from a partition with its result: attempt 2 is newer.
    feed(events.Event("j1", "finished", 1, worker="a", result={"counts": {"ERROR": 7}}))
    assert row().status == "started" and row().worker == "b"
    feed(events.Event("j1", "finished", 2, worker="b", result={"counts": {"ERROR": 7}, "lines": 9, "bytes": 90}))
    r = row().to_dict()
    assert (r["status"], r["attempts"], r["counts"], r["error"], r["worker"]) == ("finished", 2, {"ERROR": 7}, None, "b")
    assert Scan.select().count() == 1


def test_reconciler_guesses_yield_to_the_jobs_own_events(database):
    feed(push_event("j1"), events.Event("j1", "started", 1),
         events.Event("j1", "scheduled", 1, error="OSError: EIO"))
    feed(events.Event("j1", "scheduled", 1, worker=RECONCILE, error="a guess"))
    assert row().error == "OSError: EIO"
    feed(events.Event("j1", "failed", 1, worker=RECONCILE, error="the job vanished from Redis"))
    assert row().status == "failed" and row().error.startswith("the job vanished")


def test_a_new_push_supersedes_the_old_jobs_events(database):
    feed(push_event("old"), events.Event("old", "started", 1))
    feed(push_event("new"))
    feed(events.Event("old", "finished", 1, result={"counts": {"ERROR": 1}}))
    r = row()
    assert (r.job_id, r.status, r.attempts, r.counts) == ("new", "queued", 0, None)


def test_reapplying_a_batch_changes_nothing(database):
    batch = [push_event("j1"), events.Event("j1", "started", 1), events.Event("j1", "finished", 1, result={"counts": {}})]
    feed(*batch)
    before = row().to_dict()
    with db.atomic():
        apply(batch)  # the mirror died after committing, before acknowledging
    assert row().to_dict() == before
    assert History.select().count() == 3


def test_mirror_killed_and_restarted_mid_run_loses_nothing(cluster, tmp_path, conn):
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(300):
        (logs / f"{i:03}.log").write_text("ERROR\n" * (i % 7))
    mirror = cluster.mirror()
    cluster.worker()
    cluster.worker()
    cluster.run("push", str(logs), check=True)
    cluster.wait_for(lambda: Scan_count(cluster) > 50, what="the mirror to apply some events")
    cluster.kill_tree(mirror)
    time.sleep(1)
    cluster.mirror()
    assert cluster.run("push", "--wait", str(logs / "000.log")).returncode in (0, 1)
    cluster.wait_for(lambda: finished_count(cluster) == 300, timeout=90, what="all 300 rows finished")
    group = conn.xinfo_groups(EVENTS_KEY)[0]
    assert group["pending"] == 0
    rows = cluster.report()
    assert all(rows[str(logs / f"{i:03}.log")]["counts"] == {"ERROR": i % 7} for i in range(300))
    assert_consistent(cluster.db)


def test_two_mirrors_take_turns_without_corrupting_the_database(cluster, tmp_path, conn):
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(200):
        (logs / f"{i:03}.log").write_text("ERROR\n")
    cluster.mirror()
    cluster.mirror()
    cluster.worker()
    cluster.worker()
    cluster.run("push", "--wait", str(logs), check=True)
    cluster.wait_for(lambda: finished_count(cluster) == 200, timeout=60, what="200 finished rows")
    assert_consistent(cluster.db)


def test_a_job_that_vanished_from_redis_is_reported_failed(cluster, tmp_path, conn):
    (tmp_path / "a.log").write_text("ERROR\n")
    job_id = cluster.json("push", "--json", str(tmp_path / "a.log"))["enqueued"][0]["job_id"]
    conn.delete(f"rq:job:{job_id}")
    rows = cluster.report()
    assert rows[str(tmp_path / "a.log")]["status"] == "failed"
    assert "vanished from Redis" in rows[str(tmp_path / "a.log")]["error"]


def Scan_count(cluster):
    try:
        with sqlite3.connect(cluster.db) as c:
            return c.execute("select count(*) from scans").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def finished_count(cluster):
    with sqlite3.connect(cluster.db) as c:
        return c.execute("select count(*) from scans where status = 'finished'").fetchone()[0]


def assert_consistent(path):
    with sqlite3.connect(path) as c:
        assert c.execute("pragma integrity_check").fetchone()[0] == "ok"
        dup = c.execute("select job_id, attempt, state, count(*) from history group by job_id, attempt, state "
                        "having count(*) > 1 and state != 'queued'").fetchall()
        assert dup == [], f"state changes applied twice: {dup[:5]}"
        bad = c.execute("select path, status, attempts from scans where status != 'finished' or attempts != 1").fetchall()
        assert bad == [], bad[:5]
