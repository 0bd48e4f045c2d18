"""Path expansion and enqueueing: unit tests on the filesystem and fakeredis (no server needed)."""

import io
import os

import fakeredis
import pytest
import redis

from logjobs import events, plans, push, queues, store, tracking
from logjobs.defaults import EVENTS_KEY
from logjobs.exceptions import PushCut, PushRefused
from logjobs.paths import expand
from logjobs.rqsafe import Queue


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "a.log").write_text("ERROR one\n")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "b.log").write_text("x\n")
    (tmp_path / "sub" / "deeper" / "c.log.gz").write_bytes(b"")
    return tmp_path


def test_expand_files_directories_globs_and_stdin(tree, monkeypatch):
    monkeypatch.chdir(tree)
    assert expand(["a.log"]) == [str(tree / "a.log")]
    assert expand([str(tree / "sub")]) == [
        str(tree / "sub" / "b.log"),
        str(tree / "sub" / "deeper" / "c.log.gz"),
    ]
    assert expand(["**/*.log"]) == [str(tree / "a.log"), str(tree / "sub" / "b.log")]
    stdin = io.StringIO(f"{tree / 'a.log'}\n\nsub/b.log\n")
    assert expand(["-"], stdin=stdin) == [str(tree / "a.log"), str(tree / "sub" / "b.log")]


def test_expand_keeps_each_file_once_in_first_seen_order(tree):
    paths = expand([str(tree / "sub" / "b.log"), str(tree), str(tree / "a.log")])
    assert paths[0] == str(tree / "sub" / "b.log")
    assert len(paths) == len(set(paths)) == 3


def test_expand_keeps_a_file_of_several_names_once(tree):
    os.symlink(tree / "sub", tree / "via")
    os.link(tree / "a.log", tree / "hard.log")
    paths = expand(
        [
            str(tree / "sub" / "b.log"),
            str(tree / "via" / "b.log"),
            str(tree / "a.log"),
            str(tree / "hard.log"),
        ]
    )
    assert paths == [str(tree / "sub" / "b.log"), str(tree / "a.log")]


def test_expand_refuses_what_names_nothing(tree):
    with pytest.raises(PushRefused, match="no such file or directory: .*missing.log"):
        expand([str(tree / "a.log"), str(tree / "missing.log")])
    with pytest.raises(PushRefused, match="no file matches"):
        expand([str(tree / "*.nothing")])
    with pytest.raises(PushRefused, match="no such file"):
        expand(["-"], stdin=io.StringIO(str(tree / "gone.log") + "\n"))
    # A path longer than the system takes is not said to be missing.
    deep = str(tree) + "/" + "/".join(["d" * 200] * 25) + "/a.log"
    with pytest.raises(
        PushRefused, match="file name too long: .*/a.log .path.; nothing was enqueued"
    ):
        expand([deep])


def test_expand_leaves_odd_files_for_their_job_to_report(tree):
    os.mkfifo(tree / "fifo")
    os.symlink("loop", tree / "loop")
    os.symlink(tree / "nowhere", tree / "dangling")
    paths = expand([str(tree / "fifo"), str(tree / "loop"), str(tree / "dangling")])
    assert [os.path.basename(p) for p in paths] == ["fifo", "loop", "dangling"]


def test_expand_does_not_follow_symlinked_directories(tree):
    os.symlink(tree, tree / "sub" / "back")  # a loop, if followed
    paths = expand([str(tree / "sub")])
    assert str(tree / "sub" / "back") in paths
    assert len(paths) == 3


def test_expand_leaves_links_to_the_folders_own_files_to_them(tree, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    (other / "x.log").write_text("ERROR\n")
    os.symlink("a.log", tree / "current.log")  # counted under a.log's own name
    os.symlink(
        other / "x.log", tree / "outside.log"
    )  # a file of no folder pushed: pushed by its link
    paths = expand([str(tree)])
    assert str(tree / "current.log") not in paths and str(tree / "outside.log") in paths
    assert expand([str(tree / "current.log")]) == [str(tree / "current.log")]  # named: pushed


def test_roots_refuse_paths_outside_them(tree, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    (other / "x.log").write_text("ERROR\n")
    os.symlink(other / "x.log", tree / "escape.log")
    assert expand([str(tree / "a.log")], roots=[str(tree)]) == [str(tree / "a.log")]
    with pytest.raises(PushRefused, match="outside the allowed roots"):
        expand([str(other / "x.log")], roots=[str(tree)])
    with pytest.raises(PushRefused, match="outside the allowed roots"):
        expand([str(tree / "escape.log")], roots=[str(tree)])


def test_push_batches_into_one_transaction_per_batch(tree):
    conn = fakeredis.FakeRedis()
    calls = []
    real_pipeline = conn.pipeline

    def counting_pipeline(*args, **kwargs):
        pipe = real_pipeline(*args, **kwargs)
        execute = pipe.execute
        pipe.execute = lambda *a, **k: (
            calls.append((pipe.transaction, [str(c[0][0]).upper() for c in pipe.command_stack]))
            or execute(*a, **k)
        )
        return pipe

    conn.pipeline = counting_pipeline
    paths = [str(tree / f"f{i}.log") for i in range(25)]
    pushed = push.push(conn, paths, queue="high", batch=10, batch_files=4)
    assert len(pushed.files) == 25
    transactions = [names for atomic, names in calls if atomic and "XADD" in names]
    assert len(transactions) == 3  # 10 + 10 + 5 files, each in one MULTI/EXEC
    assert Queue("high", connection=conn).count == 3 + 3 + 2  # at most 4 files a job
    entries = conn.xrange(EVENTS_KEY)
    assert len(entries) == 3  # one stream entry per transaction, carrying each file's event
    assert sorted(e.path for i, f in entries for e in events.read(i, f)) == sorted(paths)


def test_a_push_that_loses_redis_midway_says_how_much_is_in(tree, monkeypatch):
    """Each batch is whole; Redis lost after some were in, the push said only that Redis was
    lost."""
    conn = fakeredis.FakeRedis()
    paths = [str(tree / f"f{i}.log") for i in range(25)]
    once, batches = store.once, []

    def once_then_lost(conn, queue_commands):
        if batches:
            raise redis.ConnectionError("Connection refused")
        batches.append(once(conn, queue_commands))

    monkeypatch.setattr(push, "once", once_then_lost)
    with pytest.raises(
        PushCut,
        match=r"^after enqueuing 10 of 25 file\(s\), in whole batches \(push the same paths "
        r"again: what is in is skipped\): Connection refused$",
    ):
        push.push(conn, paths, queue="high", batch=10)
    with pytest.raises(redis.ConnectionError):  # nothing in: the error as it is
        push.push(conn, [str(tree / f"f{i}.log") for i in range(10, 25)], queue="high", batch=10)


def test_plan_batches_small_files_and_splits_big_ones(tmp_path):
    small = [tmp_path / f"s{i}.log" for i in range(5)]
    for p in small:
        p.write_bytes(b"x\n" * 500)  # 1000 bytes
    big = tmp_path / "big.log"
    big.write_bytes(b"ERROR line\n" * 1000)  # 11000 bytes
    jobs = plans.plan(
        [str(p) for p in small[:3]] + [str(big)] + [str(p) for p in small[3:]],
        split_bytes=2000,
        batch_files=10,
        batch_bytes=2500,
    )
    files = [j.paths for j in jobs if isinstance(j, plans.FilesJob)]
    assert files == [
        [str(small[0]), str(small[1])],
        [str(small[2]), str(small[3])],
        [str(small[4])],
    ]
    parts = [j for j in jobs if isinstance(j, plans.PartJob)]
    assert len(parts) == 5 and all(p.parts == 5 for p in parts)
    assert [p.part for p in parts] == [0, 1, 2, 3, 4]
    assert parts[0].start == 0 and parts[-1].end is None
    assert all(a.end == b.start for a, b in zip(parts, parts[1:]))  # contiguous


def test_push_skips_files_already_in_flight(tree):
    conn = fakeredis.FakeRedis()
    first = push.push(conn, [str(tree / "a.log")])
    again = push.push(conn, [str(tree / "a.log"), str(tree / "sub" / "b.log")])
    assert again.skipped == first.files
    assert list(again.files) == [str(tree / "sub" / "b.log")]


def test_push_rejects_unknown_queue(tree):
    with pytest.raises(PushRefused, match="unknown queue"):
        push.push(fakeredis.FakeRedis(), [str(tree / "a.log")], queue="urgent")


def test_job_ids_are_valid_rq_ids_and_never_reused():
    ids = {push.new_job_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(i.replace("-", "").replace("_", "").isalnum() and i.isascii() for i in ids)


def test_expand_refuses_file_names_that_are_not_utf8(tree):
    os.close(os.open(os.path.join(os.fsencode(tree), b"bad-\xff.log"), os.O_CREAT | os.O_WRONLY))
    with pytest.raises(
        PushRefused, match=r"not valid UTF-8: .*bad-\\xff.log; rename it"
    ):  # the bytes, as ls -b
        expand([str(tree)])


def test_node_queue_names():
    assert queues.queue_name("high") == "high"
    assert queues.queue_name("low", "web-1") == "web-1.low"
    assert queues.split_queue_name("web-1.low") == ("web-1", "low")
    assert queues.split_queue_name("high") == (None, "high")
    assert queues.split_queue_name("logjobs-selftest-ab12") == (None, None)
    assert queues.node_worker_queues("a") == [
        "a.high",
        "high",
        "a.default",
        "default",
        "a.low",
        "low",
    ]
    for bad in (
        "a b",
        "-x",
        "a.b",
        "",
    ):  # "-x": its worker's queue "-x.high" reads as an option of rq worker
        with pytest.raises(PushRefused, match="bad node name"):
            queues.queue_name("high", bad)
    with pytest.raises(PushRefused, match="unknown priority"):
        queues.queue_name("urgent")


def test_one_record_has_one_heir():
    """Files taken for the same old one: the one with its inode is it (renamed); copies alike in
    their first KiB cannot be told apart, so none is (given one record, one got the other's counts).
    """

    def ident(ino):
        return tracking.Identity(1, ino, 10, 0, "gzip", 1024, "h")

    record = tracking.record_of(ident(7), job_id="lj-1", end=10, patterns=["ERROR"], counts={})
    candidates = {
        "/l/a.gz": ("/l/a", record),
        "/l/b.gz": ("/l/a", record),
        "/l/c": ("/l/c.old", record),
    }
    assert push._one_heir(
        candidates, {"/l/a.gz": ident(8), "/l/b.gz": ident(9), "/l/c": ident(5)}
    ) == {"/l/c": ("/l/c.old", record)}
    assert push._one_heir(
        candidates, {"/l/a.gz": ident(8), "/l/b.gz": ident(7), "/l/c": ident(5)}
    ) == {"/l/b.gz": ("/l/a", record), "/l/c": ("/l/c.old", record)}
