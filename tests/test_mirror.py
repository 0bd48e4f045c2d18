"""The mirror: event ordering, crash and restart, two mirrors at once, reconciliation with RQ."""

import datetime
import json
import os
import sqlite3
import time
import tracemalloc

import fakeredis
import peewee
import pytest

from logjobs import events, mirror, rowstore, wire
from logjobs.defaults import EVENTS_GROUP, EVENTS_KEY, HEADS_KEY, INODES_KEY
from logjobs.models import History, Scan, db, open_database
from logjobs.rows import RECONCILE, apply


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


P = "/l/a.log"


def push_event(job_id, path=P, part=0, parts=1):
    return events.Event(
        job_id, path, "queued", part=part, parts=parts, queue="high", patterns=["ERROR"]
    )


RESULT = {"counts": {}, "lines": 0, "bytes": 0, "compression": None}


def ev(job_id, state, attempt, part=0, **kw):
    return events.Event(job_id, P, state, attempt, part, **kw)


def test_events_apply_in_attempt_order_and_late_ones_are_ignored(database):
    feed(push_event("j1"), ev("j1", "started", 1, worker="a"))
    feed(
        ev("j1", "queued", 1, worker="keeper", error="worker a died"),
        ev("j1", "started", 2, worker="b"),
    )
    # Attempt 1's worker comes back from a partition with its result: attempt 2 is newer.
    feed(ev("j1", "finished", 1, worker="a", result=dict(RESULT, counts={"ERROR": 7})))
    assert row().status == "started" and row().worker == "b"
    feed(
        ev(
            "j1",
            "finished",
            2,
            worker="b",
            result={"counts": {"ERROR": 7}, "lines": 9, "bytes": 90},
        )
    )
    r = row().to_dict()
    assert (r["status"], r["attempts"], r["counts"], r["error"], r["worker"]) == (
        "finished",
        2,
        {"ERROR": 7},
        None,
        "b",
    )
    assert Scan.select().count() == 1


def test_reconciler_guesses_yield_to_the_jobs_own_events(database):
    feed(push_event("j1"), ev("j1", "started", 1), ev("j1", "scheduled", 1, error="OSError: EIO"))
    feed(ev("j1", "scheduled", 1, worker=RECONCILE, error="a guess"))
    assert row().error == "OSError: EIO"
    feed(ev("j1", "failed", 1, worker=RECONCILE, error="the job vanished from Redis"))
    assert row().status == "failed" and row().error.startswith("the job vanished")


def test_a_new_push_supersedes_the_old_jobs_events(database):
    feed(push_event("old"), ev("old", "started", 1))
    feed(push_event("new"))
    feed(ev("old", "finished", 1, result=RESULT))
    r = row()
    assert (r.job_id, r.status, r.attempts, r.counts) == ("new", "queued", 0, None)


def test_a_new_push_resets_every_field_of_the_row(database):
    """A batch that only pushes a file writes its row as the push left it, without summarising its
    parts."""
    feed(
        push_event("old"),
        ev("old", "started", 1, worker="a"),
        ev("old", "failed", 1, worker="a", error="gone"),
    )
    feed(push_event("new", parts=2), push_event("new1", part=1, parts=2))
    r = row().to_dict()
    assert {
        k: r[k]
        for k in (
            "job_id",
            "status",
            "attempts",
            "error",
            "worker",
            "started_at",
            "ended_at",
            "counts",
            "parts",
        )
    } == {
        "job_id": "new",
        "status": "queued",
        "attempts": 0,
        "error": None,
        "worker": None,
        "started_at": None,
        "ended_at": None,
        "counts": {},
        "parts": 2,
    }
    assert [p["job_id"] for p in json.loads(row().part_states)] == ["new", "new1"]


def test_a_split_file_is_finished_when_every_part_is_and_counts_add_up(database):
    feed(
        push_event("p0", parts=3),
        push_event("p1", part=1, parts=3),
        push_event("p2", part=2, parts=3),
    )
    result = {"counts": {"ERROR": 2}, "lines": 10, "bytes": 100, "compression": None}
    feed(
        ev("p1", "started", 1, part=1),
        ev("p1", "finished", 1, part=1, result=result),
        ev("p0", "started", 1),
        ev("p0", "finished", 1, result=result),
    )
    assert row().status == "queued"  # part 2 waits for a worker: none is on the file
    feed(ev("p2", "started", 1, part=2))
    assert row().status == "started"
    feed(ev("p2", "scheduled", 1, part=2, error="OSError: EIO"))
    assert row().status == "scheduled"  # finished parts do not hide the wait for a retry
    feed(ev("p2", "started", 2, part=2), ev("p2", "finished", 2, part=2, result=result))
    r = row().to_dict()
    assert (r["status"], r["counts"], r["lines"], r["bytes"], r["attempts"]) == (
        "finished",
        {"ERROR": 6},
        30,
        300,
        2,
    )
    feed(
        push_event("q0", parts=2),
        push_event("q1", part=1, parts=2),
        ev("q1", "failed", 1, part=1, error="gone"),
    )
    r = row().to_dict()
    assert (r["status"], r["error"], r["parts"], r["counts"]) == ("failed", "gone", 2, {})


def test_a_grown_file_waiting_for_its_new_scan_is_not_started(database):
    """The earlier scan a new one continues is a finished part 0: the row waits with the new
    part."""
    feed(push_event("j1"), ev("j1", "started", 1), ev("j1", "finished", 1, result=RESULT))
    feed(
        events.Event(
            "j2", P, "queued", part=0, parts=2, queue="high", patterns=["ERROR"], base="j1", since=0
        ),
        push_event("j2", part=1, parts=2),
    )
    assert row().status == "queued"
    feed(ev("j2", "started", 1, part=1))
    assert row().status == "started"
    feed(ev("j2", "scheduled", 1, part=1, error="OSError: EIO"))
    assert row().status == "scheduled"
    feed(ev("j2", "started", 2, part=1), ev("j2", "finished", 2, part=1, result=RESULT))
    assert (row().status, row().attempts) == ("finished", 2)


def test_an_outcome_without_a_started_event_carries_its_start(database):
    """A batch's later files send no `started` (jobs.Reporter): their row goes from queued to
    finished, and the scan's start and duration come from the outcome."""
    feed(push_event("j1"))
    feed(ev("j1", "finished", 1, worker="a", result=RESULT, started_at=1000.0, at=1002.5))
    r = row()
    assert (r.status, r.attempts, r.worker) == ("finished", 1, "a")
    assert r.started_at == datetime.datetime(1970, 1, 1, 0, 16, 40)
    assert History.get(History.state == "finished").duration == 2.5


def test_a_batch_of_more_files_than_one_select_takes(database, monkeypatch):
    """SQLite allows 32766 parameters a statement unless built with more: rows are read in
    chunks."""
    monkeypatch.setattr(rowstore, "SELECT_CHUNK", 7)
    paths = [f"/l/{i}.log" for i in range(30)]
    feed(*(push_event(f"j{i}", path=p) for i, p in enumerate(paths)))
    feed(*(events.Event(f"j{i}", p, "finished", 1, result=RESULT) for i, p in enumerate(paths)))
    assert [r.status for r in Scan.select().order_by(Scan.id)] == ["finished"] * 30


def test_events_from_a_newer_logjobs_keep_what_this_one_knows():
    fields = {
        b"events": b'[{"job_id": "j1", "path": "/l/a.log", "state": "started", "attempt": 1, '
        b'"shiny": true}]'
    }
    (e,) = events.read(b"5-0", fields)
    assert (e.job_id, e.state, e.attempt, e.stream_id) == ("j1", "started", 1, "5-0/0")


def test_events_with_text_orjson_refuses_go_through_the_stream_and_the_database(database):
    # A pattern given as bytes that are not UTF-8 (a lone surrogate in Python): orjson and msgspec
    # refuse it, the stdlib takes it, and it reads back the same.
    pattern = os.fsdecode(b"caf\xe9")
    conn = fakeredis.FakeRedis()
    sent = [
        events.Event("j1", P, "queued", parts=1, queue="high", patterns=[pattern]),
        ev("j1", "finished", 1, worker="w", result={**RESULT, "counts": {pattern: 2**62}}),
    ]
    events.emit(conn, *sent)
    ((_, entries),) = conn.xread({EVENTS_KEY: 0})
    ((entry_id, fields),) = entries
    got = events.read(entry_id, fields)
    assert [e.patterns for e in got] == [e.patterns for e in sent]
    assert wire.plain(got[1].result)["counts"] == {pattern: 2**62}
    feed(*got)
    assert row().to_dict()["counts"] == {pattern: 2**62}
    # A count no file can hold is no logjobs event.
    events.emit(
        conn, ev("j1", "finished", 1, worker="w", result={**RESULT, "counts": {"ERROR": 2**70}})
    )
    ((_, entries),) = conn.xread({EVENTS_KEY: entry_id})
    with pytest.raises(wire.Invalid):
        events.read(*entries[0])


def test_reapplying_a_batch_changes_nothing(database):
    batch = [push_event("j1"), ev("j1", "started", 1), ev("j1", "finished", 1, result=RESULT)]
    feed(*batch)
    before = row().to_dict()
    with db.atomic():
        apply(batch)  # the mirror died after committing, before acknowledging
    assert row().to_dict() == before
    assert History.select().count() == 3


def backlog(conn, entries, files=200, example=2000):
    """`entries` pushes of `files` files, each then finished with a fat result (as an analysis
    makes); returns how many events that is."""
    for e in range(entries):
        paths = [f"/l/{e}-{i}.log" for i in range(files)]
        events.emit(
            conn,
            *(
                events.Event(f"j{e}", p, "queued", parts=1, queue="high", patterns=["ERROR"])
                for p in paths
            ),
        )
        events.emit(
            conn,
            *(
                events.Event(
                    f"j{e}",
                    p,
                    "finished",
                    1,
                    worker="w",
                    started_at=1.0,
                    result={
                        **RESULT,
                        "counts": {"ERROR": 1},
                        "analysis": None,
                        "padding": "x" * example,
                    },
                )
                for p in paths
            ),
        )
    return entries * files * 2


def small_then_big(conn):
    """Entries of one small event each (jobs starting), then the backlog's big ones."""
    for e in range(100):
        events.emit(
            conn,
            events.Event(
                f"s{e}", f"/s/{e}.log", "queued", parts=1, queue="high", patterns=["ERROR"]
            ),
        )
    return 100 + backlog(conn, 40)


def drain_peak(conn, fill):
    """Peak memory of a mirror draining the backlog `fill(conn)` makes; checks every step's
    bytes."""
    conn.flushall()
    Scan.delete().execute()
    History.delete().execute()
    expected = fill(conn)
    m, steps = mirror.Mirror(conn), []  # the bytes of each step
    step = m.stream.step

    def measured_step():
        entries = step()
        steps.append(sum(len(fields[b"events"]) for _, fields in entries))
        return entries

    m.stream.step = measured_step
    assert m.lock.acquire()  # as once() and run() hold it
    tracemalloc.start()
    try:
        assert m.drain() == expected
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        m.lock.release()
    assert (
        conn.xpending(EVENTS_KEY, EVENTS_GROUP)["pending"] == 0 and conn.xlen(EVENTS_KEY) <= 1
    )  # trimmed
    assert max(steps) <= events.STEP_BYTES
    return peak


def test_a_long_backlog_is_applied_in_steps_of_bounded_memory(database, conn, monkeypatch):
    # A mirror back after an outage reads a megabyte of entries at a time, not the whole backlog,
    # whatever their sizes. (Entries of small events, read first, made it take the big ones behind
    # them 500 at a time: a step's size was guessed from the last one's.)
    monkeypatch.setattr(events, "STEP_BYTES", 1 << 20)
    uniform = drain_peak(conn, lambda conn: backlog(conn, 10))
    assert Scan.select().where(Scan.status == "finished").count() == 10 * 200
    assert drain_peak(conn, lambda conn: backlog(conn, 40)) < 1.25 * uniform
    assert drain_peak(conn, small_then_big) < 1.25 * uniform
    assert Scan.select().where(Scan.status == "finished").count() == 40 * 200


def test_an_entry_holds_at_most_its_share_of_events(conn):
    events.emit(
        conn,
        *(
            events.Event(
                "j", f"/l/{i}.log", "finished", 1, result={**RESULT, "padding": "x" * 3000}
            )
            for i in range(100)
        ),
    )
    events.emit(
        conn,
        events.Event("j", "/l/big.log", "finished", 1, result={**RESULT, "padding": "x" * 100000}),
    )
    entries = conn.xrange(EVENTS_KEY)
    assert [len(events.read(i, f)) for i, f in entries[-2:]] == [
        100 - sum(len(events.read(i, f)) for i, f in entries[:-2]),
        1,
    ]
    assert all(len(f[b"events"]) <= events.ENTRY_BYTES for _, f in entries[:-1])
    assert sorted(e.path for i, f in entries for e in events.read(i, f)) == sorted(
        [f"/l/{i}.log" for i in range(100)] + ["/l/big.log"]
    )


def test_the_rotation_indexes_forget_files_no_record_holds(database):
    """logjobs:inodes and logjobs:heads find a file known under another name; an entry whose file
    was replaced under its name, or whose record went, is swept out instead of staying for ever."""
    conn = fakeredis.FakeRedis()
    m = mirror.Mirror(conn)
    assert m.lock.acquire()

    def scanned(job_id, path, ino, head):
        identity = {
            "dev": 1,
            "ino": ino,
            "size": 9,
            "mtime_ns": 0,
            "compression": None,
            "head_len": 9,
            "head": head,
        }
        events.emit(
            conn,
            events.Event(
                job_id, path, "queued", parts=1, queue="high", patterns=["ERROR"], identity=identity
            ),
            events.Event(job_id, path, "finished", 1, result=RESULT),
        )
        m.drain()

    scanned("j1", "/l/a.log", 10, "a1")
    scanned("j2", "/l/b.log", 20, "b1")
    scanned("j3", "/l/a.log", 11, "a2")  # a.log replaced: a new file under the old name
    conn.hset(INODES_KEY, "1:30", "/l/gone.log")  # a file whose record went
    assert len(conn.hgetall(INODES_KEY)) == 4 and len(conn.hgetall(HEADS_KEY)) == 3
    for _ in range(10):  # steps of two fields: the sweep goes round
        m.forget_stale_records(batch=2)
    assert conn.hgetall(INODES_KEY) == {b"1:11": b"/l/a.log", b"1:20": b"/l/b.log"}
    assert conn.hgetall(HEADS_KEY) == {b"9:a2": b"/l/a.log", b"9:b1": b"/l/b.log"}
    m.lock.release()


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
    cluster.wait_for(
        lambda: finished_count(cluster) == 300, timeout=90, what="all 300 rows finished"
    )
    group = conn.xinfo_groups(EVENTS_KEY)[0]
    assert group["pending"] == 0
    rows = cluster.report()
    assert all(rows[str(logs / f"{i:03}.log")]["counts"] == {"ERROR": i % 7} for i in range(300))
    assert_consistent(cluster.db)


def test_a_database_locked_by_another_writer_holds_the_mirror_up_without_stopping_it(
    cluster, tmp_path
):
    # A transaction begun as a reader (the mirror reads the rows it updates) could not wait to write
    # while another connection did: "database is locked" at once, which ended the mirror.
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(50):
        (logs / f"{i:02}.log").write_text("ERROR\n" * i)
    mirror_proc = cluster.mirror()
    cluster.worker()
    cluster.wait_for(
        lambda: os.path.exists(cluster.db) and Scan_count(cluster) == 0 and tables(cluster),
        what="the mirror's tables",
    )
    holder = sqlite3.connect(cluster.db, isolation_level=None)
    holder.execute("begin immediate")  # as a backup, or an operator's sqlite3 shell, would
    cluster.run("push", "--wait", str(logs), check=True)
    time.sleep(3)  # the mirror waits for the lock meanwhile
    assert mirror_proc.poll() is None and Scan_count(cluster) == 0
    holder.execute("commit")
    cluster.wait_for(lambda: finished_count(cluster) == 50, what="all 50 rows finished")
    assert mirror_proc.poll() is None


def tables(cluster):
    with sqlite3.connect(cluster.db) as c:
        return {"scans", "history"} <= {
            name for (name,) in c.execute("select name from sqlite_master")
        }


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
    # Small files share a job (the reconciler asks RQ once per job): each of its files is reported.
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("a.log", "b.log", "c.log"):
        (logs / name).write_text("ERROR\n")
    job_ids = [e["job_id"] for e in cluster.json("push", "--json", str(logs))["enqueued"]]
    assert len(set(job_ids)) < len(job_ids)  # some job holds several files
    conn.delete(*{f"rq:job:{job_id}" for job_id in job_ids})
    rows = cluster.report()
    for name in ("a.log", "b.log", "c.log"):
        assert rows[str(logs / name)]["status"] == "failed"
        assert "vanished from Redis" in rows[str(logs / name)]["error"]


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
        # Applied ones only: a reconciler's guess that lost to the job's own event (sent in the
        # moment between a drain and the reconciler reading RQ) is kept for the record, unapplied.
        dup = c.execute(
            "select path, part, attempt, state, count(*) from history where applied "
            "group by job_id, path, part, attempt, state having count(*) > 1 and state != 'queued'"
        ).fetchall()
        assert dup == [], f"state changes applied twice: {dup[:5]}"
        bad = c.execute(
            "select path, status, attempts from scans where status != 'finished' or attempts != 1"
        ).fetchall()
        assert bad == [], bad[:5]


def test_the_pipeline_on_postgresql(cluster, tmp_path, postgres_url):
    import psycopg2

    from logjobs.models import MODELS

    database = open_database(postgres_url)
    database.drop_tables(MODELS)
    database.close()
    cluster.env["LOGJOBS_DB"] = postgres_url
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(30):
        (logs / f"{i}.log").write_text("ERROR\n" * i)
    cluster.worker()
    cluster.mirror()
    cluster.run("push", "--wait", "--batch-files", "7", str(logs), check=True)
    rows = cluster.wait_for(
        lambda: (
            (r := cluster.json("report", "--json"))
            and all(x["status"] == "finished" for x in r)
            and len(r) == 30
            and r
        ),
        what="30 finished rows",
    )
    assert {os.path.basename(r["path"]): r["counts"]["ERROR"] for r in rows} == {
        f"{i}.log": i for i in range(30)
    }
    # The server drops the mirror's connection (as a restart of PostgreSQL does): it must open
    # another.
    admin = psycopg2.connect(postgres_url)
    admin.autocommit = True
    admin.cursor().execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'logjobs' "
        "AND pid <> pg_backend_pid()"
    )
    admin.close()
    (logs / "later.log").write_text("ERROR\n" * 3)
    cluster.run("push", "--wait", str(logs / "later.log"), check=True)
    assert cluster.wait_for(
        lambda: [
            r
            for r in cluster.json("report", "--json")
            if r["path"].endswith("later.log") and r["status"] == "finished"
        ],
        what="a row written after the drop",
    )
    # A URL's password shows in no message (this server trusts any).
    missing = cluster.run(
        "--db", postgres_url.replace("postgres@", "postgres:hunter2@"), "show", "/nope.log"
    )
    assert (
        missing.returncode == 2
        and "postgres:***@" in missing.stderr
        and "hunter2" not in missing.stderr
    )


def test_a_full_disk_is_said_so_and_loses_no_event(database, caplog):
    """SQLite rolls a transaction back by itself when its disk is full; the error to log is that,
    not Peewee's "cannot rollback - no transaction is active" that followed it."""
    conn = fakeredis.FakeRedis()
    events.emit(conn, *[push_event(f"j{i}", path=f"/l/{'x' * 200}{i}.log") for i in range(2000)])
    pages = database.execute_sql("PRAGMA page_count").fetchone()[0]
    database.execute_sql(f"PRAGMA max_page_count = {pages + 2}")  # a disk that fills at once
    m = mirror.Mirror(conn)
    assert m.lock.acquire()  # as once() and run() hold it
    with pytest.raises(peewee.OperationalError, match="database or disk is full"):
        m.drain()
    assert Scan.select().count() == 0
    database.execute_sql(
        "PRAGMA max_page_count = 1073741823"
    )  # room again: every event is still there
    assert m.drain() == 2000 and Scan.select().count() == 2000
