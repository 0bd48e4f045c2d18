"""Incremental rescans: a file pushed again is scanned only for what is new, and counted once
whatever its name, under real `rq worker` processes and a running mirror."""

import gzip
import os
import shutil

import msgspec
import pytest

from logjobs import tracking
from logjobs.tracking import APPEND, FULL, MOVED, UNCHANGED, Identity, decide

from helpers import BIN, grep_count


def lines(first, n, every=3):
    return b"".join(
        b"%06d %s something happened\n" % (i, b"ERROR" if i % every == 0 else b"INFO")
        for i in range(first, first + n)
    )


def record_of(path, job_id="lj-1", patterns=("ERROR",), tail=False):
    """The record the mirror writes after a scan of `path` as it is now."""
    ident = Identity.of(str(path))
    return tracking.record_of(
        ident,
        job_id=job_id,
        end=ident.size,
        tail=tail,
        patterns=list(patterns),
        analysed=True,
        counts={},
        lines=0,
    )


# -- deciding, on real files -----------------------------------------------------------------------


def test_decide_unchanged_grown_truncated_replaced(tmp_path):
    p = tmp_path / "app.log"
    p.write_bytes(lines(0, 100))
    rec = record_of(p)
    d = decide(str(p), Identity.of(str(p)), rec, ["ERROR"])
    assert (d.action, d.scan) == (UNCHANGED, False)
    with open(p, "ab") as f:
        f.write(lines(100, 10))
    d = decide(str(p), Identity.of(str(p)), rec, ["ERROR"])
    assert (d.action, d.since, d.base) == (APPEND, rec.end, "lj-1")
    assert decide(str(p), Identity.of(str(p)), rec, ["ERROR", "WARN"]).action == FULL
    assert (
        decide(str(p), Identity.of(str(p)), rec, ["ERROR"], analyse=False).reason
        == "counts only, unlike its last scan"
    )
    assert decide(str(p), Identity.of(str(p)), rec, ["ERROR"], force=True).action == FULL
    p.write_bytes(lines(0, 50))  # truncated in place: same inode, shorter
    assert (
        decide(str(p), Identity.of(str(p)), rec, ["ERROR"]).reason
        == "truncated since its last scan"
    )
    p.write_bytes(b"X" + lines(0, 200)[1:])  # same inode, other head
    assert decide(str(p), Identity.of(str(p)), rec, ["ERROR"]).action == FULL
    q = tmp_path / "new.log"
    q.write_bytes(lines(0, 200))
    os.replace(q, p)  # replaced by another file, same head and longer: a new inode
    assert decide(str(p), Identity.of(str(p)), rec, ["ERROR"]).action == FULL


def test_decide_a_file_that_grew_while_scanned_and_not_since_is_unchanged(tmp_path):
    p = tmp_path / "app.log"
    p.write_bytes(lines(0, 100))
    rec = record_of(p)  # its identity as pushed
    with open(p, "ab") as f:
        f.write(lines(100, 10))  # while it is scanned, to its end
    rec = msgspec.structs.replace(rec, end=p.stat().st_size)
    d = decide(str(p), Identity.of(str(p)), rec, ["ERROR"])
    assert (d.action, d.scan) == (UNCHANGED, False)  # not an append of nothing
    with open(p, "ab") as f:
        f.write(lines(110, 1))
    assert decide(str(p), Identity.of(str(p)), rec, ["ERROR"]).since == rec.end


def test_decide_a_last_line_still_open_is_read_again_from_its_start(tmp_path):
    p = tmp_path / "app.log"
    p.write_bytes(lines(0, 10) + b"half a li")
    rec = record_of(p, tail=True)
    with open(p, "ab") as f:
        f.write(b"ne\n")
    # A record that knows its last line's length: the next scan starts there.
    known = msgspec.structs.replace(rec, partial=len(b"half a li"))
    decision = decide(str(p), Identity.of(str(p)), known, ["ERROR"])
    assert (decision.action, decision.since) == (APPEND, len(lines(0, 10)))
    assert "from its last line" in decision.reason
    # One that does not (written by 0.1, or of a split file): the file is scanned whole.
    assert decide(str(p), Identity.of(str(p)), rec, ["ERROR"]).action == FULL


def test_decide_rotation_by_rename_copy_and_gzip(tmp_path):
    log, old, gz = tmp_path / "app.log", tmp_path / "app.log.1", tmp_path / "app.log.1.gz"
    log.write_bytes(lines(0, 100))
    rec = record_of(log)
    with open(log, "ab") as f:
        f.write(lines(100, 5))  # written after the last scan, before rotation
    os.rename(log, old)
    log.write_bytes(lines(1000, 3))
    d = decide(str(old), Identity.of(str(old)), None, ["ERROR"], candidate=(str(log), rec))
    assert (d.action, d.since, d.moved_from, d.scan) == (MOVED, rec.end, str(log), True)
    assert decide(str(log), Identity.of(str(log)), rec, ["ERROR"]).action == FULL
    # Renamed and untouched: nothing to read.
    os.rename(old, tmp_path / "app.log.2")
    rec2 = record_of(tmp_path / "app.log.2")
    os.rename(tmp_path / "app.log.2", old)
    d = decide(
        str(old),
        Identity.of(str(old)),
        None,
        ["ERROR"],
        candidate=(str(tmp_path / "app.log.2"), rec2),
    )
    assert (d.action, d.scan) == (MOVED, False)
    # Compressed after rotation: a new inode, known by its (uncompressed) head once the old name is
    # gone.
    gz.write_bytes(gzip.compress(old.read_bytes()))
    assert (
        decide(str(gz), Identity.of(str(gz)), None, ["ERROR"], candidate=(str(old), rec2)).action
        == FULL
    ), "while app.log.1 still holds that content, the archive is a copy, not the file"
    old.unlink()
    d = decide(str(gz), Identity.of(str(gz)), None, ["ERROR"], candidate=(str(old), rec2))
    assert (d.action, d.since, d.moved_from) == (MOVED, rec2.end, str(old))


# -- end to end ------------------------------------------------------------------------------------


@pytest.fixture
def running(cluster):
    cluster.worker()
    cluster.worker()
    cluster.mirror()
    return cluster


def push(cluster, *args):
    doc = cluster.json("push", "--wait", "--json", *args)
    assert all(o["status"] == "finished" for o in doc.get("outcome", [])), doc
    return doc


def settled(cluster, path):
    """The file's row once the mirror has it final, and Redis has its record (what the next push
    reads)."""

    def row():
        r = cluster.report().get(str(path))
        return r if r and r["status"] in ("finished", "failed", "moved") else None

    return cluster.wait_for(row, what=f"{path} final in the report")


def test_append_push_append_push_scans_only_what_is_new(running, tmp_path):
    p = tmp_path / "app.log"
    p.write_bytes(lines(0, 3000))
    first = push(running, str(p))
    assert first["enqueued"][0]["scan"] == "full"
    row = settled(running, p)
    assert row["counts"] == {"ERROR": grep_count(str(p))} and row["scanned"] == p.stat().st_size
    for step in range(2):
        before = p.stat().st_size
        with open(p, "ab") as f:
            f.write(lines(10_000 * (step + 1), 500, every=2))
        doc = push(running, str(p))
        assert (doc["enqueued"][0]["scan"], doc["enqueued"][0]["since"]) == ("append", before)
        assert doc["outcome"][0]["counts"] == {"ERROR": grep_count(str(p))}
        row = running.wait_for(
            lambda before=before: (
                (r := running.report()[str(p)])["scanned"] == p.stat().st_size - before
                and r["status"] == "finished"
                and r
            ),
            what="the appended scan in the report",
        )
        assert row["counts"] == {"ERROR": grep_count(str(p))}
        assert row["lines"] == p.read_bytes().count(b"\n") and row["bytes"] == p.stat().st_size
    out = running.run("push", str(p), check=True).stdout
    assert "enqueued 0 file(s)" in out and "1 unchanged since their last scan" in out
    doc = push(running, "--force", str(p))
    assert doc["enqueued"][0]["scan"] == "full"
    running.wait_for(
        lambda: running.report()[str(p)]["scanned"] == p.stat().st_size, what="the forced full scan"
    )


def test_a_file_without_a_final_newline_is_continued_from_its_last_line(running, tmp_path):
    """Loghub's samples end so, as does a log caught mid-write: the next push reads that last line
    again, and what was appended, instead of the whole file; every figure as a whole scan's."""
    p, whole = tmp_path / "app.log", tmp_path / "whole.log"
    p.write_bytes(lines(0, 2000) + b"2024-05-01 12:00:00 ERROR half a li")
    push(running, str(p))
    settled(running, p)
    for step, more in enumerate(
        [b"ne\n" + lines(5000, 10) + b"INFO open", b" still open ERROR", b"\n" + lines(9000, 5)]
    ):
        line_start = p.read_bytes().rfind(b"\n") + 1
        with open(p, "ab") as f:
            f.write(more)
        doc = push(running, str(p))
        assert (doc["enqueued"][0]["scan"], doc["enqueued"][0]["since"]) == ("append", line_start)
        assert doc["outcome"][0]["counts"] == {"ERROR": grep_count(str(p))}
        row = running.wait_for(
            lambda start=line_start: (
                (r := running.report()[str(p)])["scanned"] == p.stat().st_size - start
                and r["status"] == "finished"
                and r
            ),
            what=f"append {step} in the report",
        )
        shutil.copyfile(p, whole)
        push(running, "--force", str(whole))
        expected = settled(running, whole)
        for key in ("counts", "lines", "bytes", "levels", "format"):
            assert row[key] == expected[key], (step, key)
        mine, theirs = (
            {
                (m["level"], m["template"]): m["count"]
                for m in running.json(
                    "top",
                    "--json",
                    "--path",
                    str(path),
                    "--level",
                    "info",
                    "--level",
                    "error",
                    "--limit",
                    "1000",
                )
            }
            for path in (p, whole)
        )
        assert mine == theirs


def test_big_appends_are_split_and_counted_once(running, tmp_path):
    p = tmp_path / "big.log"
    p.write_bytes(lines(0, 20_000))
    push(running, "--split-size", "100000", str(p))
    settled(running, p)
    before = p.stat().st_size
    with open(p, "ab") as f:
        f.write(lines(50_000, 20_000, every=5))
    doc = push(running, "--split-size", "100000", str(p))
    assert doc["enqueued"][0]["parts"] >= 2
    row = running.wait_for(
        lambda: (r := running.report()[str(p)])["scanned"] == p.stat().st_size - before and r,
        what="the split appended scan",
    )
    assert (
        row["counts"] == {"ERROR": grep_count(str(p))}
        and row["parts"] == doc["enqueued"][0]["parts"] + 1
    )


def test_rotation_by_rename_then_gzip_counts_each_line_once(running, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.log"
    log.write_bytes(lines(0, 2000))
    push(running, str(logs))
    settled(running, log)
    scanned_before = log.stat().st_size
    with open(log, "ab") as f:
        f.write(lines(5000, 300, every=2))  # written before rotation, not yet scanned
    total = grep_count(str(log))
    os.rename(log, logs / "app.log.1")  # logrotate: rename, then a fresh file
    log.write_bytes(lines(9000, 30))
    doc = push(running, str(logs))
    how = {os.path.basename(e["path"]): e for e in doc["enqueued"]}
    assert how["app.log.1"]["scan"] == "moved" and how["app.log.1"]["moved_from"] == str(log)
    assert how["app.log"]["scan"] == "full"
    rows = running.wait_for(
        lambda: (
            (r := running.report())
            and r[str(logs / "app.log.1")]["status"] == "finished"
            and r[str(log)]["status"] == "finished"
            and r
        ),
        what="both rows final",
    )
    assert rows[str(logs / "app.log.1")]["counts"] == {"ERROR": total}
    assert (
        rows[str(logs / "app.log.1")]["scanned"]
        == os.path.getsize(logs / "app.log.1") - scanned_before
    )
    assert rows[str(log)]["counts"] == {"ERROR": grep_count(str(log))}
    # Compressed after rotation (logrotate's delaycompress): the archive takes over app.log.1's
    # counts.
    with open(logs / "app.log.1", "rb") as src, gzip.open(logs / "app.log.1.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.unlink(logs / "app.log.1")
    doc = push(running, str(logs))
    how = {os.path.basename(e["path"]): e for e in doc["enqueued"]}
    assert how["app.log.1.gz"]["moved_from"] == str(logs / "app.log.1")
    assert [u["path"] for u in doc["unchanged"]] == [str(log)]
    rows = running.wait_for(
        lambda: (
            (r := running.report())
            and r.get(str(logs / "app.log.1.gz"), {}).get("status") == "finished"
            and r
        ),
        what="the archive's row",
    )
    assert rows[str(logs / "app.log.1.gz")]["counts"] == {"ERROR": total}
    assert rows[str(logs / "app.log.1.gz")]["scanned"] == 0, "the archive holds nothing new"
    assert rows[str(logs / "app.log.1")]["status"] == "moved"
    assert rows[str(logs / "app.log.1")]["moved_to"] == str(logs / "app.log.1.gz")
    counted = sum(r["counts"].get("ERROR", 0) for r in rows.values())
    assert counted == total + grep_count(str(log)), "every line counted once over all rows"


def test_a_rotation_of_several_generations_in_one_push_hands_each_record_on(running, tmp_path):
    """logrotate's `rotate N`: app.log.1 -> app.log.2 and app.log -> app.log.1 at once, then one
    push. app.log.1 took app.log's record first, so app.log.2 found app.log.1's scan gone, and
    failed."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_bytes(lines(0, 300))
    (logs / "app.log.1").write_bytes(lines(1000, 200, every=2))
    push(running, str(logs))
    for name in ("app.log", "app.log.1"):
        settled(running, logs / name)
    counts = {name: grep_count(str(logs / name)) for name in ("app.log", "app.log.1")}
    os.rename(logs / "app.log.1", logs / "app.log.2")
    os.rename(logs / "app.log", logs / "app.log.1")
    (logs / "app.log").write_bytes(lines(5000, 30))
    doc = push(running, str(logs))
    how = {os.path.basename(e["path"]): (e["scan"], e.get("moved_from")) for e in doc["enqueued"]}
    assert how == {
        "app.log": ("full", None),
        "app.log.1": ("moved", str(logs / "app.log")),
        "app.log.2": ("moved", str(logs / "app.log.1")),
    }
    rows = running.wait_for(
        lambda: (
            (r := running.report())
            and all(r[str(logs / n)]["status"] in ("finished", "failed") for n in how)
            and r
        ),
        what="every row final",
    )
    assert {n: (rows[str(logs / n)]["status"], rows[str(logs / n)]["counts"]) for n in how} == {
        "app.log": ("finished", {"ERROR": grep_count(str(logs / "app.log"))}),
        "app.log.1": ("finished", {"ERROR": counts["app.log"]}),
        "app.log.2": ("finished", {"ERROR": counts["app.log.1"]}),
    }


def test_truncated_file_is_scanned_from_the_start(running, tmp_path):
    p = tmp_path / "app.log"
    p.write_bytes(lines(0, 1000))
    push(running, str(p))
    settled(running, p)
    with open(p, "r+b") as f:  # copytruncate, then new lines
        f.truncate(0)
        f.write(lines(7000, 40, every=2))
    doc = push(running, str(p))
    # Its head differs now, so truncation and replacement look alike.
    assert (doc["enqueued"][0]["scan"], doc["enqueued"][0]["reason"]) == (
        "full",
        "truncated or replaced since its last scan",
    )
    row = running.wait_for(
        lambda: (r := running.report()[str(p)])["bytes"] == p.stat().st_size and r,
        what="the rescan",
    )
    assert row["counts"] == {"ERROR": 20} and row["scanned"] == p.stat().st_size


def test_a_file_replaced_between_push_and_scan_fails_clearly(cluster, tmp_path):
    p = tmp_path / "app.log"
    p.write_bytes(lines(0, 100))
    cluster.worker()
    cluster.mirror()
    push(cluster, str(p))
    settled(cluster, p)
    with open(p, "ab") as f:
        f.write(lines(100, 10))
    cluster.stop_all()  # no worker: the job waits while the file is replaced
    doc = cluster.json("push", "--json", str(p))
    assert doc["enqueued"][0]["scan"] == "append"
    p.write_bytes(b"other content\n" * 100)
    cluster.worker()
    rows = cluster.wait_for(
        lambda: (r := cluster.report()[str(p)])["status"] == "failed" and r, what="the failure"
    )
    assert "replaced since it was pushed" in rows["error"]
    # A new file beginning as the old content did is not taken for app.log moved: app.log's row no
    # longer holds the scan that record described. (It was, and the push said "finished" with the
    # record's counts added, while the mirror failed it for want of that scan.)
    q = tmp_path / "new.log"
    q.write_bytes(lines(0, 150))
    doc = push(cluster, str(q))
    assert (doc["enqueued"][0]["scan"], doc["outcome"][0]["counts"]) == (
        "full",
        {"ERROR": grep_count(q, "ERROR")},
    )
    assert settled(cluster, q)["status"] == "finished"
    doc = push(cluster, str(p))
    assert doc["enqueued"][0]["scan"] == "full"
    assert cluster.wait_for(lambda: cluster.report()[str(p)]["status"] == "finished")


def test_parts_of_a_split_file_rotated_between_them_fail_clearly(cluster, tmp_path):
    """Parts of one scan may run far apart (a backlog): one that finds another file under the name
    fails, instead of the row adding up counts of two files."""
    p = tmp_path / "app.log"
    p.write_bytes(lines(0, 400))
    cluster.mirror()
    doc = cluster.json(
        "push", "--json", "--node", "n1", "--split-size", "4000", str(p)
    )  # no worker reads n1 yet
    assert doc["enqueued"][0]["parts"] == 2

    def burst(*options):
        assert (
            cluster.spawn(
                [os.path.join(BIN, "rq"), "worker", "--burst", *options, "n1.default"], "burst"
            ).wait(60)
            == 0
        )

    burst("--max-jobs", "1")  # the first part, of app.log as pushed
    os.rename(p, tmp_path / "app.log.1")
    p.write_bytes(b"%06d INFO a new file\n" % 0 + lines(1, 600))  # a new first line: another head
    burst()
    row = cluster.wait_for(
        lambda: (r := cluster.report()[str(p)])["status"] == "failed" and r, what="the failure"
    )
    assert row["error"] == "replaced since it was pushed (its first bytes differ); push it again"
    assert row["attempts"] == 1  # a permanent failure: no retry


def test_identity_of_unreadable_or_special_files_is_none(tmp_path):
    assert Identity.of(str(tmp_path)) is None
    assert Identity.of(str(tmp_path / "missing")) is None
    os.mkfifo(tmp_path / "fifo")
    assert Identity.of(str(tmp_path / "fifo")) is None
    assert tracking.fingerprint(b"") == tracking.fingerprint(b"")


def test_small_files_alike_are_not_taken_for_one_another(tmp_path):
    """A new file (another inode) with the same few bytes as a deleted one is a new file, not the
    old one compressed or copied."""
    old, new = tmp_path / "probe-1.log", tmp_path / "probe-2.log"
    old.write_bytes(b"ERROR once\n")
    rec = record_of(old)
    new.write_bytes(b"ERROR once\n")
    old.unlink()
    assert (
        decide(str(new), Identity.of(str(new)), None, ["ERROR"], candidate=(str(old), rec)).action
        == FULL
    )


def test_compressed_files_alike_in_their_first_kilobyte_are_two_files(tmp_path):
    """Two archives whose contents begin with the same header, both still there: neither is the
    other moved. (One was: the old archive's compressed size was taken for its content's length.)"""
    header = lines(0, 40)  # more than HEAD_BYTES
    one, two = tmp_path / "c.gz", tmp_path / "d.gz"
    one.write_bytes(gzip.compress(header + lines(100, 10)))
    two.write_bytes(gzip.compress(header + lines(200, 300)))
    rec = msgspec.structs.replace(record_of(one), end=len(header) + len(lines(100, 10)))
    assert (
        decide(str(two), Identity.of(str(two)), None, ["ERROR"], candidate=(str(one), rec)).action
        == FULL
    )
    one.unlink()  # gone: now the other may be it, recompressed
    assert (
        decide(str(two), Identity.of(str(two)), None, ["ERROR"], candidate=(str(one), rec)).action
        == MOVED
    )


def test_a_push_before_the_mirror_has_the_last_scan_scans_whole(cluster, tmp_path):
    """Pushed again before the mirror has recorded the previous scan, a file cannot continue the
    record before that one: it is scanned whole, and its row ends right, never failed."""
    p = tmp_path / "app.log"
    p.write_bytes(lines(0, 500))
    cluster.worker()
    push(cluster, str(p))
    cluster.run("mirror", "--once", check=True)  # records the first scan
    with open(p, "ab") as f:
        f.write(lines(500, 50))
    assert push(cluster, str(p))["enqueued"][0]["scan"] == "append"  # finished; not mirrored yet
    with open(p, "ab") as f:
        f.write(lines(600, 50, every=2))
    doc = push(cluster, str(p))
    assert (doc["enqueued"][0]["scan"], doc["enqueued"][0]["reason"]) == (
        "full",
        "its latest scan is not in the status database yet",
    )
    row = cluster.report()[str(p)]
    assert row["status"] == "finished" and row["counts"] == {"ERROR": grep_count(str(p))}
    assert row["scanned"] == p.stat().st_size


def scanned_folder(cluster, tmp_path):
    """A folder of one log, app.log, scanned by a worker and mirrored (by `mirror --once`: none
    runs)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_bytes(lines(0, 300))
    cluster.worker()
    push(cluster, str(logs))
    cluster.run("mirror", "--once", check=True)
    return logs


def test_a_move_pushed_twice_before_the_mirror_has_it_is_handed_on_once(cluster, tmp_path):
    """A push hands a moved file's record on at once: pushed again before the mirror has the move
    (the mirror busy, or down), the file was taken for moved again, and its row failed."""
    logs = scanned_folder(cluster, tmp_path)
    os.rename(logs / "app.log", logs / "app.log.1")
    # Only renamed: nothing to scan, no job (it said "as 1 job(s)": the finished scan it stands on).
    assert (
        cluster.run("push", str(logs / "app.log.1"), check=True).stdout
        == "enqueued 1 file(s) into default as 0 job(s)\n"
    )
    again = push(cluster, str(logs / "app.log.1"))
    assert again["enqueued"] == [] and [u["path"] for u in again["unchanged"]] == [
        str(logs / "app.log.1")
    ]
    rows = cluster.report()
    assert (rows[str(logs / "app.log.1")]["status"], rows[str(logs / "app.log.1")]["counts"]) == (
        "finished",
        {"ERROR": grep_count(str(logs / "app.log.1"))},
    )
    assert rows[str(logs / "app.log")]["status"] == "moved"


def test_a_log_rotated_while_its_scan_waited_is_recorded_as_the_file_read(cluster, tmp_path):
    """A whole-file scan that runs after a rotation counts the new file: its record must describe
    that file, not the one pushed. It kept the pushed file's identity, so the rotated file, found
    under its new name, was continued from the new file's end with the new file's counts."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.log"
    log.write_bytes(lines(0, 400))
    cluster.mirror()
    assert (
        cluster.json("push", "--json", str(log))["enqueued"][0]["scan"] == "full"
    )  # no worker yet: it waits
    os.rename(log, logs / "app.log.1")
    log.write_bytes(lines(9000, 30, every=2))
    cluster.worker()
    settled(cluster, log)
    doc = push(cluster, str(logs))
    how = {os.path.basename(e["path"]): e["scan"] for e in doc["enqueued"]}
    assert how == {"app.log.1": "full"} and [u["path"] for u in doc["unchanged"]] == [str(log)]
    rows = cluster.wait_for(
        lambda: (
            (r := cluster.report()) and r[str(logs / "app.log.1")]["status"] == "finished" and r
        ),
        what="app.log.1's row",
    )
    assert {n: rows[str(logs / n)]["counts"] for n in ("app.log", "app.log.1")} == {
        n: {"ERROR": grep_count(str(logs / n))} for n in ("app.log", "app.log.1")
    }


def rows_match_grep(cluster, logs, names):
    """Every named file's row, once final, finished with grep's count."""
    rows = cluster.wait_for(
        lambda: (
            (r := cluster.report())
            and all(r.get(str(logs / n), {}).get("status") in ("finished", "failed") for n in names)
            and r
        ),
        what="rows final",
    )
    assert {n: (rows[str(logs / n)]["status"], rows[str(logs / n)]["counts"]) for n in names} == {
        n: ("finished", {"ERROR": grep_count(str(logs / n))}) for n in names
    }


def test_two_rotations_pushed_while_the_mirror_is_down_hand_each_record_on(cluster, tmp_path):
    """The mirror applies both rotations' moves at once: app.log.1, made by the first, is not
    summarised yet when the second moves it on. Its row was not `finished`, so app.log.2 failed."""
    logs = scanned_folder(cluster, tmp_path)
    for generation in (1, 2):  # logrotate's `rotate 2`, `create`, a push after each run; no mirror
        if generation == 2:
            os.rename(logs / "app.log.1", logs / "app.log.2")
        os.rename(logs / "app.log", logs / "app.log.1")
        (logs / "app.log").write_bytes(lines(1000 * generation, 100))
        push(cluster, str(logs))
    rows_match_grep(cluster, logs, ["app.log", "app.log.1", "app.log.2"])


def test_a_file_whose_continued_scan_failed_is_scanned_whole_under_its_next_name(cluster, tmp_path):
    """The old name's record was continued although a newer scan of that name (which failed) had
    replaced it: the file, rotated on, failed too ('no longer in the database')."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_bytes(lines(0, 300))
    cluster.worker()
    cluster.mirror()
    push(cluster, str(logs))
    settled(cluster, logs / "app.log")
    with open(logs / "app.log", "ab") as f:
        f.write(lines(300, 50))
    cluster.stop_all()  # the jobs wait
    os.rename(logs / "app.log", logs / "app.log.1")
    (logs / "app.log").write_bytes(lines(1000, 100))
    cluster.run("push", str(logs), check=True)
    os.rename(logs / "app.log.1", tmp_path / "hidden")  # missing when its job runs
    cluster.worker()
    cluster.mirror()
    assert cluster.wait_for(lambda: cluster.report()[str(logs / "app.log.1")]["status"] == "failed")
    os.rename(tmp_path / "hidden", logs / "app.log.1")
    os.rename(logs / "app.log.1", logs / "app.log.2")
    os.rename(logs / "app.log", logs / "app.log.1")
    (logs / "app.log").write_bytes(lines(2000, 100))
    doc = push(cluster, str(logs))
    assert {os.path.basename(e["path"]): e["scan"] for e in doc["enqueued"]}["app.log.2"] == "full"
    rows_match_grep(cluster, logs, ["app.log", "app.log.1", "app.log.2"])
