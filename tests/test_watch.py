"""Watched folders: `logjobs watch` and `rq cron conf/cron.py` against real workers, Redis and
mirror; the Watcher's debounce and inotify fallback in process, with a recording push."""

import os
import re
import signal
import subprocess
import threading
import time

import pytest

from logjobs import push, watch
from logjobs.defaults import FILES_KEY
from logjobs.rqsafe import Job

from helpers import BIN

CRON_CONF = os.path.join(os.path.dirname(__file__), "..", "conf", "cron.py")


def grep_c(path, pattern="ERROR"):
    out = subprocess.run(
        ["grep", "-a", "-c", "-F", "--", pattern, str(path)],
        capture_output=True,
        text=True,
        env=dict(os.environ, LC_ALL="C"),
    )
    return int(out.stdout)


def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)


class WatchProcess:
    """`logjobs watch ARGS...` as a user starts it, its output in a file."""

    def __init__(self, cluster, *args):
        self.cluster, self.log = cluster, cluster.tmp / f"watch{len(cluster.procs)}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [os.path.join(BIN, "logjobs"), "watch", *args],
                env=cluster.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        cluster.procs.append(self.proc)
        cluster.wait_for(
            lambda: "watching " in self.output(), timeout=20, what="the watcher to start"
        )

    def output(self):
        return self.log.read_text()

    def pushes(self):
        return [
            tuple(map(int, m))
            for m in re.findall(
                r"^pushed (\d+) file\(s\)(?: \([^\n]*\))? into \S+ as (\d+) job\(s\)",
                self.output(),
                re.M,
            )
        ]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(20) == 0, self.output()
        assert "Traceback" not in self.output(), self.output()


def counted(cluster, paths):
    """True once every file's row is finished with its `grep -c` count (the report, else False)."""
    report = cluster.report()
    ok = all(
        report.get(str(p), {}).get("status") == "finished"
        and report[str(p)]["counts"] == {"ERROR": grep_c(p)}
        for p in paths
    )
    return report if ok else False


def files_below(top):
    return sorted(p for p in top.rglob("*") if p.is_file() and not watch.ignored(p.name))


@pytest.mark.parametrize("mode", ["inotify", "poll"])
def test_created_appended_renamed_and_deleted_files_are_counted(cluster, tmp_path, mode):
    logs = tmp_path / "logs"
    (logs / "old").mkdir(parents=True)
    write(
        logs / "old" / "before.log", "ERROR 1\nok\nERROR 2\n"
    )  # there before the watcher: its start pushes it
    cluster.worker(name="w1"), cluster.worker(name="w2"), cluster.mirror()
    watcher = WatchProcess(
        cluster, "--debounce", "0.3", *(["--poll", "0.2"] if mode == "poll" else []), str(logs)
    )
    assert ("polling every 0.2 s" if mode == "poll" else "(inotify)") in watcher.output()
    cluster.wait_for(
        lambda: counted(cluster, files_below(logs)), timeout=20, what="the first sweep"
    )

    write(logs / "a.log", "ERROR a\n")
    write(logs / "b.log", "x\nERROR b\nERROR b\n")
    write(logs / ".a.log.swp", "ERROR hidden\n")  # ignored
    write(logs / "gone.log", "ERROR\n")
    os.unlink(logs / "gone.log")  # deleted before its debounce ran out
    cluster.wait_for(
        lambda: counted(cluster, [logs / "a.log", logs / "b.log"]), timeout=20, what="new files"
    )

    write(logs / "a.log", "more\nERROR a2\nERROR a3", mode="a")  # grown, last line without newline
    os.rename(logs / "b.log", logs / "old" / "b-renamed.log")  # renamed into a subfolder
    os.unlink(logs / "old" / "before.log")  # deleted after its scan
    (logs / "new").mkdir()
    write(logs / "new" / "c.log", "ERROR c\n" * 5)  # in a new folder
    report = cluster.wait_for(
        lambda: counted(cluster, files_below(logs)), timeout=20, what="changed files"
    )

    assert report[str(logs / "a.log")]["counts"] == {"ERROR": 3}
    assert str(logs / ".a.log.swp") not in report and str(logs / "gone.log") not in report
    assert not [r for r in report.values() if r["status"] == "failed"], report
    # Each push line names what it pushed.
    pushed = [line for line in watcher.output().splitlines() if line.startswith("pushed ")]
    assert any(
        f"({logs / 'new' / 'c.log'}" in line or f", {logs / 'new' / 'c.log'}" in line
        for line in pushed
    ), pushed
    watcher.stop()


def test_a_restarted_watcher_enqueues_nothing_for_unchanged_files(cluster, tmp_path, conn):
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(5):
        write(logs / f"{i}.log", f"ERROR {i}\n" * i)
    cluster.worker(), cluster.mirror()
    watcher = WatchProcess(cluster, "--debounce", "0.2", str(logs))
    cluster.wait_for(
        lambda: counted(cluster, files_below(logs)), timeout=20, what="the first sweep"
    )
    watcher.stop()
    jobs_before = conn.hgetall(FILES_KEY)

    again = WatchProcess(cluster, "--debounce", "0.2", str(logs))
    cluster.wait_for(lambda: again.pushes(), timeout=10, what="the restarted watcher's sweep")
    assert again.pushes() == [(0, 0)] and "; 5 unchanged" in again.output(), again.output()
    assert conn.hgetall(FILES_KEY) == jobs_before
    write(logs / "1.log", "ERROR grown\n", mode="a")
    cluster.wait_for(lambda: counted(cluster, files_below(logs)), timeout=20, what="the grown file")
    again.stop()


def test_a_burst_of_files_is_pushed_in_few_batches(cluster, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    cluster.worker(), cluster.worker(), cluster.mirror()
    watcher = WatchProcess(cluster, "--debounce", "0.5", str(logs))
    for i in range(50):
        write(logs / f"{i:02}.log", "ERROR\n" * (i % 7))
    cluster.wait_for(lambda: counted(cluster, files_below(logs)), timeout=30, what="50 files")
    pushes = [p for p in watcher.pushes() if p[0]]
    assert sum(n for n, _ in pushes) == 50 and len(pushes) <= 3, watcher.output()
    watcher.stop()


def test_rq_cron_pushes_folders_periodically(cluster, tmp_path, conn):
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "a.log", "ERROR\nERROR\n")
    cluster.worker(), cluster.mirror()
    env = dict(
        cluster.env,
        LOGJOBS_CRON_FOLDERS=str(logs),
        LOGJOBS_CRON_INTERVAL="1",
        LOGJOBS_CRON_PRIORITY="low",
        LOGJOBS_CRON_PATTERNS="ERROR",
    )
    cluster.spawn([os.path.join(BIN, "rq"), "cron", os.path.abspath(CRON_CONF)], "cron", env=env)
    cluster.wait_for(
        lambda: counted(cluster, [logs / "a.log"]), timeout=20, what="the first periodic push"
    )
    assert cluster.report()[str(logs / "a.log")]["queue"] == "low"
    write(logs / "b.log", "ERROR b\n")
    write(logs / "a.log", "ERROR again\n", mode="a")
    cluster.wait_for(
        lambda: counted(cluster, files_below(logs)), timeout=20, what="the next periodic push"
    )

    def no_new_job_for_two_pushes():
        jobs = conn.hgetall(FILES_KEY)
        time.sleep(2.5)
        return conn.hgetall(FILES_KEY) == jobs

    # Once the mirror has recorded the last scans, later pushes find nothing new to scan.
    cluster.wait_for(
        no_new_job_for_two_pushes, timeout=10, interval=0, what="pushes that enqueue nothing"
    )


def test_rq_cron_pushes_with_logjobs_settings(cluster, tmp_path, conn):
    # As `logjobs push` would: only files within the allowed roots, with the configured retry policy
    # and analysis, read from LOGJOBS_* in the `rq cron` process's environment.
    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    for folder in (allowed, elsewhere):
        folder.mkdir()
        write(folder / "a.log", "ERROR\n")
    cluster.worker(), cluster.mirror()
    env = dict(
        cluster.env,
        LOGJOBS_CRON_FOLDERS=f"{allowed}:{elsewhere}",
        LOGJOBS_CRON_INTERVAL="1",
        LOGJOBS_ROOTS=str(allowed),
        LOGJOBS_RETRY_MAX="5",
        LOGJOBS_ANALYSIS="false",
    )
    cluster.spawn([os.path.join(BIN, "rq"), "cron", os.path.abspath(CRON_CONF)], "cron", env=env)
    report = cluster.wait_for(
        lambda: counted(cluster, [allowed / "a.log"]), timeout=20, what="the periodic push"
    )
    time.sleep(2)  # a second push, which would have taken the other folder too
    assert str(elsewhere / "a.log") not in cluster.report()
    row = report[str(allowed / "a.log")]
    assert (row["levels"], row["lines"]) == ({}, None)  # LOGJOBS_ANALYSIS=false: counts only
    assert Job.fetch(row["job_id"], connection=conn).retries_left == 5


def test_a_redis_outage_is_logged_and_the_push_retried(cluster, tmp_path, conn):
    logs = tmp_path / "logs"
    logs.mkdir()
    watcher = WatchProcess(cluster, "--debounce", "0.1", str(logs))
    cluster.server.stop()
    write(logs / "a.log", "ERROR\n")
    cluster.wait_for(
        lambda: "push of 1 file(s) failed" in watcher.output(), timeout=20, what="a failed push"
    )
    cluster.server.start()
    cluster.wait_for(
        lambda: conn.hget(FILES_KEY, str(logs / "a.log")), timeout=20, what="the push, retried"
    )
    assert watcher.pushes() == [(1, 1)], watcher.output()
    watcher.stop()


def test_watching_a_missing_folder_is_a_one_line_error(cluster, tmp_path):
    result = cluster.run("watch", str(tmp_path / "nope"))
    assert (
        result.returncode == 2
        and result.stderr.strip()
        == f"logjobs: error: cannot watch {tmp_path / 'nope'}: no such directory"
    )


# The Watcher in process: a recording push instead of Redis.


class Recorder:
    def __init__(self, fail=0):
        self.calls, self.fail = [], fail

    def __call__(self, paths):
        if self.fail:
            self.fail -= 1
            raise ConnectionError("Redis is down")
        self.calls.append(sorted(paths))
        return push.Pushed({p: ["lj-x"] for p in paths}, {})


def running(watcher, push_log):
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop, push_log.append), daemon=True)
    thread.start()
    return stop, thread


def wait(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_file_written_without_pause_is_still_pushed(tmp_path):
    push = Recorder()
    watcher = watch.Watcher([tmp_path], push, debounce=0.2)
    stop, thread = running(watcher, [])
    path = str(tmp_path / "busy.log")
    started = time.monotonic()
    while time.monotonic() - started < 2.5:  # never quiet for 0.2 s
        write(path, "ERROR\n", mode="a")
        time.sleep(0.05)
    stop.set(), thread.join(10)
    # Pushed at least every 5 debounce periods (1 s), not only once writing stopped.
    assert sum(path in call for call in push.calls) >= 2, push.calls


def test_polling_sees_a_rotated_log_and_its_new_file(tmp_path):
    # Polling reports the new app.log as created before the old one as moved to app.log.1: the move
    # made the watcher forget the new file.
    push = Recorder()
    watcher = watch.Watcher([tmp_path], push, debounce=0.1, poll=0.2)
    stop, thread = running(watcher, [])
    wait(lambda: watcher.observer is not None)
    write(tmp_path / "app.log", "ERROR old\n")
    wait(lambda: [str(tmp_path / "app.log")] in push.calls)
    os.rename(tmp_path / "app.log", tmp_path / "app.log.1")
    write(tmp_path / "app.log", "ERROR new\n")
    wait(
        lambda: (
            sum(str(tmp_path / "app.log") in call for call in push.calls) == 2
            and any(str(tmp_path / "app.log.1") in call for call in push.calls)
        )
    )
    stop.set(), thread.join(10)


def test_links_to_files_of_the_tree_are_left_to_their_files(tmp_path):
    # current.log -> app-2.log: pushed under both names, its lines counted twice, or app-2.log taken
    # for moved to current.log. A link to a file elsewhere is pushed.
    (tmp_path / "app-1.log").write_text("ERROR\n")
    (tmp_path / "app-2.log").write_text("ERROR\n")
    os.symlink("app-2.log", tmp_path / "current.log")
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere.log"
    elsewhere.write_text("ERROR\n")
    os.symlink(elsewhere, tmp_path / "outside.log")
    expected = [str(tmp_path / name) for name in ("app-1.log", "app-2.log", "outside.log")]
    assert list(watch.files_below([str(tmp_path)])) == expected
    watcher = watch.Watcher([tmp_path], Recorder(), debounce=0.1)
    assert watcher._ignored(str(tmp_path / "current.log")) and not watcher._ignored(
        str(tmp_path / "outside.log")
    )


def test_inotify_that_cannot_start_falls_back_to_polling(tmp_path, monkeypatch, caplog):
    class OutOfWatches(watch.Observer):
        def start(self):
            raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watch, "Observer", OutOfWatches)
    monkeypatch.setattr(watch, "DEFAULT_WATCH_POLL", 0.1)
    push = Recorder()
    watcher = watch.Watcher([tmp_path], push, debounce=0.1)
    stop, thread = running(watcher, [])
    wait(lambda: watcher.observer is not None)
    write(tmp_path / "late.log", "ERROR\n")
    wait(lambda: [str(tmp_path / "late.log")] in push.calls)
    stop.set(), thread.join(10)
    assert watcher.method == "polling every 0.1 s"
    assert any("inotify cannot watch" in r.getMessage() for r in caplog.records)


def test_subfolders_inotify_cannot_watch_are_polled(tmp_path, monkeypatch, caplog):
    # watchdog skips a subfolder whose watch the kernel refuses (out of watches) without a word.
    (tmp_path / "sub").mkdir()
    monkeypatch.setattr(watch, "DEFAULT_WATCH_POLL", 0.1)
    monkeypatch.setattr(watch, "inotify_watches", lambda: 1)
    push = Recorder()
    watcher = watch.Watcher([tmp_path], push, debounce=0.1)
    watcher.start()
    assert watcher.method == "polling every 0.1 s"
    watcher.stop()

    monkeypatch.undo()  # a watcher with the watches it needs ...
    monkeypatch.setattr(watch, "DEFAULT_WATCH_POLL", 0.1)
    watcher = watch.Watcher([tmp_path], push, debounce=0.1)
    stop, thread = running(watcher, [])
    wait(lambda: watcher.observer is not None)
    assert watcher.method == "inotify"
    monkeypatch.setattr(watch, "inotify_watches", lambda: 1)  # ... then none for a new folder
    (tmp_path / "new").mkdir()
    wait(lambda: watcher.method == "polling every 0.1 s")
    write(tmp_path / "new" / "a.log", "ERROR\n")
    wait(lambda: [str(tmp_path / "new" / "a.log")] in push.calls)
    stop.set(), thread.join(10)
    assert sum("out of inotify watches" in r.getMessage() for r in caplog.records) == 2


def test_ignored_names():
    assert all(
        watch.ignored(n) for n in (".app.log.swp", "app.log~", "x.tmp", "dl.part", ".hidden")
    )
    assert not any(watch.ignored(n) for n in ("app.log", "app.log.1", "app.log.2.gz", "syslog"))
