#!/usr/bin/env python3
"""Issue 5's benchmark: each logjobs case beside its baseline, in the same run, several rounds.

    python bench/run.py                  # full size: a few minutes on 2 cores, ~2 GB under /tmp
    python bench/run.py --quick          # small sizes, well under a minute: proves it all works
    python bench/run.py --only small,big --rounds 5 --dir /tmp/corpora

Run it with the Python that has logjobs installed (the project's venv). It starts a private
redis-server on a free port, real `rq worker high default low` processes, `logjobs mirror`, and
Celery's worker for the baseline (installed once into bench/.venv-celery), and stops them all.
Workers run at nice 10, as conf/'s systemd and supervisor units run them (--nice 0: not niced).
Cases (docs/performance.md says what each measures):

  small   2,000 x 8 KB logs end to end (push -> every row final in the status DB), 2 rq workers,
          vs the seed article's Celery task (prefork, 2 processes, Redis broker and result backend)
  big     one 850 MB dense log end to end with 2 workers vs one `grep -c ERROR`, pushed by the
          command and through the dashboard's HTTP API
  kernel  scanner.scan per core, as a --counts-only job calls it, vs `grep -c -F` on the dense
          and the sparse log (and, for reference, the same scan counting every line too)
  memory  peak RSS of a worker, work-horses included, scanning the big logs whole, vs idle
  lag     mirror lag (finished event -> its row in the DB), every event of the small and big runs
  gzip    scanner.scan of a gzip log vs Python's gzip module reading and counting it
  analysis  scanner.scan with the analysis (levels, top messages, minutes) vs a plain
          per-line Python loop doing the same with re, on a slice of the dense and the sparse log

Cases 1-6 are issue 5's targets, about counting: their pushes say --counts-only. The analysis that
scans do by default (issue 6) reads every line in Python; its own case says what it costs.

Ratios are logjobs' speed over the baseline's: above 1, logjobs is faster.
"""

import argparse
import compileall
import dataclasses
import datetime
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

try:
    import redis

    import logjobs
    from logjobs.defaults import EVENTS_GROUP, EVENTS_KEY, FINAL_STATES
    from logjobs.embedded import RedisServer, free_port
    from logjobs.rqsafe import environ_with_worker_classes
except ImportError as exc:  # pragma: no cover
    sys.exit(
        f"bench/run.py needs logjobs installed in this Python ({exc}); run it with the project's "
        f"venv"
    )

import bench_scan
from corpus import PATTERN, big_log, compress, small_logs

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
CELERY_VENV = os.path.join(HERE, ".venv-celery")
CELERY_REQUIREMENT = "celery[redis]>=5.3,<6"
CASES = ("small", "big", "kernel", "memory", "lag", "gzip", "analysis")
POLL = 0.01  # s between looks at the status DB and at processes' memory
MB = 2**20
#: The dashboard's API token in the bench (its own Redis and database: no secret to keep).
API_TOKEN = "logjobs-bench-api-token"


@dataclasses.dataclass
class Size:
    files: int  # case small: this many logs of `file_bytes`, `small_dense` of lines matching
    file_bytes: int
    small_dense: float
    big_mb: int  # cases big, kernel, memory, gzip
    split_bytes: int | None  # `push --split-size` in case big (None: logjobs' default, 64 MiB)
    rounds: int
    analysis_mb: int  # case analysis: the first this many MB of the dense and sparse logs


FULL = Size(
    files=2000,
    file_bytes=8 * 1024,
    small_dense=0.05,
    big_mb=850,
    split_bytes=None,
    rounds=5,
    analysis_mb=64,
)
QUICK = Size(
    files=200,
    file_bytes=8 * 1024,
    small_dense=0.05,
    big_mb=24,
    split_bytes=4 * MB,
    rounds=1,
    analysis_mb=4,
)

# Python's gzip module reading the file in 1 MiB pieces and counting lines holding the pattern
# (bytes.count up to the last newline: the cheapest count there is, so the baseline is at its best).
GZIP_BASELINE = """
import gzip, json, sys, time
path, needle, rounds = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
times = []
for _ in range(rounds):
    t = time.perf_counter()
    n, carry = 0, b""
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            buf = carry + chunk
            cut = buf.rfind(b"\\n") + 1
            n += buf.count(needle, 0, cut)
            carry = buf[cut:]
    n += needle in carry
    times.append(time.perf_counter() - t)
with open("/proc/self/status") as f:
    rss = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
print(json.dumps({"times": times, "count": n, "rss": rss}))
"""


# -- processes and their memory ------------------------------------------------------------------


def _status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) * 1024 for line in f if line.startswith(field)), None)
    except OSError:
        return None


def _tree(pid):
    """pid and its descendants (a worker's work-horse, Celery's pool processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


class MemoryWatch(threading.Thread):
    """Peak RSS per group of process trees: the largest VmHWM seen in any one of their processes.

    VmHWM is each process's own high-water mark since it started (a forked work-horse's includes
    the pages it shares with its worker), read every POLL seconds while the process lives.
    """

    def __init__(self):
        super().__init__(daemon=True)
        self.roots, self.peak, self.spawned_at, self.halt = [], {}, {}, threading.Event()

    def track(self, group, pid):
        self.roots.append((group, pid))
        self.spawned_at[pid] = _status_kb("self", "VmHWM:")

    def untrack(self, pid, maxrss):
        """Stop watching `pid`; fold in its wait4 peak, which catches work-horses too short-lived to
        poll."""
        self.roots, group = (
            [(g, p) for g, p in self.roots if p != pid],
            next(g for g, p in self.roots if p == pid),
        )
        if maxrss and maxrss > self.spawned_at.pop(
            pid
        ):  # else it may be the bench's own peak, inherited
            self.peak[group] = max(self.peak.get(group, 0), maxrss)

    def run(self):
        while not self.halt.wait(POLL):
            for group, root in list(self.roots):
                for pid in _tree(root):
                    hwm = _status_kb(pid, "VmHWM:")
                    if hwm and hwm > self.peak.get(group, 0):
                        self.peak[group] = hwm

    def stop(self):
        self.halt.set()
        self.join()


def stop_tree(proc, timeout=20):
    """SIGTERM (a warm shutdown for rq and Celery workers), then SIGKILL whatever is left.

    Returns wait4's ru_maxrss (bytes): the peak of the process and of every child it reaped (a
    worker's work-horses, Celery's pool), or of the bench itself when it forked the process bigger.
    """
    if proc.returncode is not None:
        return None
    family = _tree(proc.pid)
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_maxrss * 1024
        if time.monotonic() > deadline:
            for pid in family:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = float("inf")
        time.sleep(POLL)


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL)


# -- logjobs: the processes a user runs, and the status database they fill -------------------------


def niced(argv, nice):
    """argv run at niceness `nice`, as conf/'s systemd and supervisor units run workers (0: as
    is)."""
    return ["nice", "-n", str(nice), *argv] if nice else argv


class Logjobs:
    """`rq worker high default low` x N and `logjobs mirror` around the bench's private Redis (and
    `logjobs dashboard`, for pushes through its API)."""

    def __init__(self, server, workdir, watch, nice=0):
        self.server, self.workdir, self.watch, self.nice = server, workdir, watch, nice
        self.conn = redis.Redis.from_url(server.url)
        self.procs, self.db, self.round, self.api = [], None, 0, None

    def env(self):
        env = dict(
            environ_with_worker_classes(),
            LOGJOBS_REDIS_URL=self.server.url,
            RQ_REDIS_URL=self.server.url,
            LOGJOBS_DB=self.db,
            LOGJOBS_API_TOKEN=API_TOKEN,
            PATH=BIN + os.pathsep + os.environ.get("PATH", ""),
        )
        env.pop("LOGJOBS_CONFIG", None)
        return env

    def start(self, workers, group="worker", dashboard=False):
        """A clean Redis and a new status DB, then the workers and the mirror (and the dashboard),
        all ready."""
        self.round += 1
        self.conn.flushall()
        self.db = os.path.join(self.workdir, f"status-{self.round}.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.db + suffix):
                os.remove(self.db + suffix)
        self.workers = [
            self._spawn(
                niced([os.path.join(BIN, "rq"), "worker", "high", "default", "low"], self.nice),
                f"worker{i}",
            )
            for i in range(workers)
        ]
        self.mirror = self._spawn([os.path.join(BIN, "logjobs"), "mirror"], "mirror")
        for w in self.workers:
            self.watch.track(group, w.pid)
        self.watch.track("mirror", self.mirror.pid)
        wait_until(
            lambda: self.conn.scard("rq:workers") >= workers and self._mirror_ready(),
            60,
            "rq workers and the mirror to start",
        )
        self.api = self._start_dashboard() if dashboard else None
        return self

    def _start_dashboard(self):
        """`logjobs dashboard`, answering its API (and so warm, as a service a script calls is):
        its URL."""
        port = free_port()
        proc = self._spawn([os.path.join(BIN, "logjobs"), "dashboard", "--port", str(port)], "dash")
        self.watch.track("dashboard", proc.pid)
        api = f"http://127.0.0.1:{port}/api/v1"

        def answers():
            self._check_alive()
            try:
                return api_call(api + "/status")[0] == 200
            except OSError:  # not listening yet
                return False

        wait_until(answers, 60, "the dashboard's API to answer")
        return api

    def _mirror_ready(self):
        self._check_alive()
        try:
            return any(
                g["name"] in (EVENTS_GROUP, EVENTS_GROUP.encode())
                for g in self.conn.xinfo_groups(EVENTS_KEY)
            )
        except redis.ResponseError:
            return False  # no stream yet

    def _check_alive(self):
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(
                    f"{p.args[0]} exited {p.returncode}; see the logs in {self.workdir}/logs"
                )

    def _spawn(self, argv, name):
        os.makedirs(os.path.join(self.workdir, "logs"), exist_ok=True)
        with open(os.path.join(self.workdir, "logs", f"{name}-{self.round}.log"), "wb") as log:
            proc = subprocess.Popen(
                argv,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )
        self.procs.append(proc)
        return proc

    def stop(self):
        for p in self.procs:
            self.watch.untrack(p.pid, stop_tree(p))
        self.procs = []

    def end_to_end(self, push_args, rows, lags, timeout=600):
        """Time from starting `logjobs push` until the mirror has `rows` final rows in the DB: a
        Run."""
        # --force: every round scans the same files whole, as the first did (they are unchanged
        # since then).
        # --counts-only: issue 5's targets are about counting, as grep and the Celery task do.
        argv = [os.path.join(BIN, "logjobs"), "push", "--force", "--counts-only", *push_args]
        return self._until_final(lambda: CommandPush(argv, self.env()), rows, lags, timeout)

    def end_to_end_api(self, push, rows, lags, timeout=600):
        """The same, the push a request to the running dashboard's API: {"paths": [...], ...}
        with --force and --counts-only, waiting for the outcome as `push --wait` does."""
        body = dict(push, force=True, counts_only=True, wait=True)
        return self._until_final(lambda: ApiPush(self.api + "/push", body), rows, lags, timeout)

    def _until_final(self, start, rows, lags, timeout):
        """Time from `start()`ing a push until the mirror has `rows` final rows in the DB: a Run."""
        db = StatusDB(self.db)
        t0 = time.time()
        push = start()
        while db.final(lags) < rows:
            if time.time() - t0 > timeout:
                raise RuntimeError(
                    f"not every row final after {timeout} s; see {self.workdir}/logs"
                )
            self._check_alive()
            time.sleep(POLL)
        elapsed = time.time() - t0
        answer = push.end()
        try:
            counts, failed = db.totals()
            enqueued, scanned = db.span()
            return Run(elapsed, counts, failed, enqueued - t0, scanned - t0, answer)
        finally:
            db.close()


class CommandPush:
    """`logjobs push ...` running."""

    def __init__(self, argv, env):
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def end(self):
        """None, once the command has exited well."""
        if self.proc.wait() != 0:
            raise RuntimeError(f"logjobs push failed: {self.proc.stderr.read().decode()}")
        self.proc.stderr.close()


class ApiPush(threading.Thread):
    """A push through the dashboard's API, as curl would send it, answered once its files are
    done."""

    def __init__(self, url, body):
        super().__init__(daemon=True)
        self.url, self.body, self.started = url, body, time.time()
        self.answer, self.answered, self.failure = None, None, None
        self.start()

    def run(self):
        try:
            status, doc = api_call(self.url, self.body, timeout=600)
            if status != 200:
                raise RuntimeError(f"the API answered {status}: {doc}")
            self.answer, self.answered = doc, time.time() - self.started
        except Exception as exc:  # handed to end(), in the bench's thread
            self.failure = exc

    def end(self):
        """(seconds until the answer came, the answer's outcome) once it has come."""
        self.join()
        if self.failure is not None:
            raise RuntimeError(f"the push through the API failed: {self.failure}")
        return self.answered, self.answer["outcome"]


def api_call(url, body=None, timeout=10):
    """(status, JSON answer) of a request to the dashboard's API."""
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@dataclasses.dataclass
class Run:
    """One end-to-end run: its time, what it counted, and when (s after the push started) the push
    had enqueued every job, and the last scan had ended (event times, from the history table)."""

    seconds: float
    counts: int
    failed: int
    enqueued: float
    scanned: float
    answer: tuple | None = None  # through the API: (seconds until it answered, its outcome)

    def phases(self):
        return (
            f"push {self.enqueued:.2f} + scans {self.scanned - self.enqueued:.2f} "
            f"+ mirror {self.seconds - self.scanned:.2f}"
        )


def _stamp(at):
    """Unix time of a DateTimeField as the mirror stores it (naive UTC)."""
    return datetime.datetime.fromisoformat(at).replace(tzinfo=datetime.UTC).timestamp()


class StatusDB:
    """Reads the mirror's SQLite database beside it (WAL: readers never block the writer)."""

    def __init__(self, path):
        self.conn = sqlite3.connect(path, timeout=30)
        self.last = 0

    def final(self, lags):
        """Rows in a final state; appends to `lags` how late each new `finished` history row
        landed."""
        now = time.time()
        rows = self.conn.execute(
            "SELECT rowid, at FROM history WHERE rowid > ? AND state = 'finished'", (self.last,)
        ).fetchall()
        for rowid, at in rows:
            lags.append(now - _stamp(at))
            self.last = max(self.last, rowid)
        marks = ",".join("?" * len(FINAL_STATES))
        return self.conn.execute(
            f"SELECT count(*) FROM scans WHERE status IN ({marks})", FINAL_STATES
        ).fetchone()[0]

    def span(self):
        """Unix times of the last `queued` event (the push's) and of the last `finished` one."""
        return [
            _stamp(
                self.conn.execute(
                    "SELECT max(at) FROM history WHERE state = ?", (state,)
                ).fetchone()[0]
            )
            for state in ("queued", "finished")
        ]

    def totals(self):
        """(lines matching PATTERN over all rows, failed rows)."""
        counts, failed = 0, 0
        for status, doc in self.conn.execute("SELECT status, counts FROM scans"):
            failed += status != "finished"
            counts += json.loads(doc or "{}").get(PATTERN, 0)
        return counts, failed

    def close(self):
        self.conn.close()


# -- Celery, the baseline of the small-files case --------------------------------------------------


def celery_python():
    """bench/.venv-celery's python, set up on first use; None (and a note) when it cannot be."""
    python = os.path.join(CELERY_VENV, "bin", "python")
    check = [python, "-c", "import celery, redis"]
    if os.path.exists(python) and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(
        f"setting up the Celery baseline in {os.path.relpath(CELERY_VENV)} (once) ...", flush=True
    )
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", CELERY_VENV], check=True, capture_output=True
        )
        subprocess.run(
            [
                python,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                CELERY_REQUIREMENT,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        subprocess.run(check, check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        print(
            f"  could not install {CELERY_REQUIREMENT}: {(exc.stderr or '').strip()[-500:]}; "
            f"the Celery baseline is skipped",
            flush=True,
        )
        return None
    return python


def celery_end_to_end(python, server, directory, files, workdir, watch, nice=0, timeout=600):
    """Seconds from starting the seed's producer until the result backend holds every result.

    Returns (seconds, (ERROR occurrences summed over the results, failed tasks))."""
    broker = redis.Redis.from_url(server.url)
    broker.flushall()
    backend = redis.Redis(host=server.host, port=server.port, db=1)  # celery_seed.BACKEND_DB
    env = dict(os.environ, BENCH_REDIS_URL=server.url, PYTHONPATH=HERE)
    celery = os.path.join(os.path.dirname(python), "celery")
    with open(os.path.join(workdir, "logs", "celery.log"), "ab") as log:
        worker = subprocess.Popen(
            niced(
                [
                    celery,
                    "-A",
                    "celery_seed",
                    "worker",
                    "--pool",
                    "prefork",
                    "--concurrency",
                    "2",
                    "--loglevel",
                    "WARNING",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                nice,
            ),
            cwd=HERE,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    watch.track("celery", worker.pid)
    try:
        subprocess.run(
            [python, "celery_seed.py", "ping"],
            cwd=HERE,
            env=env,
            check=True,
            timeout=90,
            capture_output=True,
        )
        t0 = time.time()
        producer = subprocess.Popen(
            [python, "celery_seed.py", "run", directory],
            cwd=HERE,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        while backend.dbsize() < files:
            if time.time() - t0 > timeout or worker.poll() is not None:
                raise RuntimeError(
                    f"Celery did not store every result; see {workdir}/logs/celery.log"
                )
            time.sleep(POLL)
        elapsed = time.time() - t0
        if producer.wait() != 0:
            raise RuntimeError("the Celery producer failed")
        errors = failed = 0
        for key in backend.scan_iter(match="celery-task-meta-*", count=1000):
            meta = json.loads(backend.get(key))
            failed += meta["status"] != "SUCCESS" or "error" in meta["result"]
            errors += meta["result"].get("errors", 0) if meta["status"] == "SUCCESS" else 0
        return elapsed, (errors, failed)
    finally:
        watch.untrack(worker.pid, stop_tree(worker))
        broker.close()
        backend.close()


# -- the cases ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    case: str
    what: str
    logjobs: str
    baseline: str
    ratio: float | None
    target: str
    met: bool | None


def median(values):
    return statistics.median(values) if values else None


def check(label, got, want):
    if got != want:
        raise RuntimeError(f"{label}: counted {got}, expected {want}")


def case_small(ctx):
    s = ctx.size
    directory = os.path.join(ctx.corpora, f"small-{s.files}x{s.file_bytes}")
    expected = small_logs(directory, s.files, s.file_bytes, s.small_dense, ctx.seed)
    print(
        f"\n[small] {s.files} logs of {s.file_bytes // 1024} KB ({s.small_dense:.0%} of lines hold "
        f"{PATTERN}), "
        f"end to end: logjobs (2 rq workers + mirror) vs Celery (prefork 2, Redis broker + backend)"
    )
    python = None if ctx.no_celery else celery_python()
    mine, theirs = [], []
    for r in range(s.rounds):
        # Alternate who goes first, so neither always runs on a warmer machine.
        order = ("logjobs", "celery") if r % 2 == 0 else ("celery", "logjobs")
        line = []
        for who in order:
            if who == "logjobs":
                lj = ctx.logjobs.start(workers=2)
                try:
                    run = lj.end_to_end([directory], s.files, ctx.lags)
                finally:
                    lj.stop()
                check("logjobs, small files", (run.counts, run.failed), (expected, 0))
                t = run.seconds
                mine.append(t)
            elif python:
                t, (count, failed) = celery_end_to_end(
                    python, ctx.server, directory, s.files, ctx.workdir, ctx.watch, ctx.nice
                )
                check("celery, small files", (count, failed), (expected, 0))
                theirs.append(t)
            else:
                continue
            line.append(
                f"{who} {t:.2f} s ({s.files / t:.0f} files/s)"
                + (f" [{run.phases()}]" if who == "logjobs" else "")
            )
        print(f"  round {r + 1}: " + "   ".join(line), flush=True)
    m, b = median(mine), median(theirs)
    ratio = (b / m) if b else None
    ctx.rows.append(
        Row(
            "1",
            f"{s.files} small files, end to end (files/s)",
            f"{s.files / m:.0f}",
            f"{s.files / b:.0f} celery" if b else "- (no celery)",
            ratio,
            ">= 3",
            None if ratio is None else ratio >= 3,
        )
    )


def case_big(ctx):
    s = ctx.size
    path = big_log(ctx.corpora, "dense", s.big_mb, ctx.seed)
    split = [] if s.split_bytes is None else ["--split-size", str(s.split_bytes)]
    api_split = {} if s.split_bytes is None else {"split_size": s.split_bytes}
    print(
        f"\n[big] one {s.big_mb} MB dense log (25% of lines hold {PATTERN}), end to end with 2 "
        f"workers{' (--split-size ' + str(s.split_bytes) + ')' if split else ''} vs one `grep -c "
        f"{PATTERN}`; pushed by `logjobs push`, and through a running dashboard's API"
    )
    env = dict(os.environ, LC_ALL="C")
    mine, api, theirs = [], [], []
    for r in range(s.rounds):
        t0 = time.perf_counter()
        out = subprocess.run(
            ["grep", "-c", PATTERN, path], env=env, capture_output=True, check=True
        ).stdout
        theirs.append(time.perf_counter() - t0)
        line = [f"grep {theirs[-1]:.2f} s"]
        # Alternate who goes first, so neither always runs on a warmer machine.
        for how in ("command", "api") if r % 2 == 0 else ("api", "command"):
            lj = ctx.logjobs.start(workers=2, dashboard=how == "api")
            try:
                if how == "api":
                    run = lj.end_to_end_api({"paths": [path], **api_split}, 1, ctx.lags)
                else:
                    run = lj.end_to_end([*split, path], 1, ctx.lags)
            finally:
                lj.stop()
            check(f"logjobs, big file, {how}", (run.counts, run.failed), (int(out), 0))
            if how == "api":
                answered, (outcome,) = run.answer
                check("logjobs, big file, the API's outcome", outcome["counts"][PATTERN], int(out))
                api.append(run.seconds)
                line.append(f"api {run.seconds:.2f} s [{run.phases()}; answered at {answered:.2f}]")
            else:
                mine.append(run.seconds)
                line.append(f"logjobs {run.seconds:.2f} s [{run.phases()}]")
        print(f"  round {r + 1}: " + "   ".join(line), flush=True)
    startup = command_seconds(ctx, [os.path.join(BIN, "logjobs"), "push", "--help"])
    floor = command_seconds(ctx, [sys.executable, "-c", "import redis, rq"])
    print(
        "  for reference, medians of 5: the `logjobs push` process starting up alone (`logjobs "
        f"push --help`) {startup:.2f} s; a Python that only imports redis-py and rq, the least any "
        f"push of RQ jobs pays before it can enqueue, {floor:.2f} s",
        flush=True,
    )
    m, a, b = median(mine), median(api), median(theirs)
    ctx.rows.append(
        Row(
            "2",
            f"{s.big_mb} MB dense log, end to end (s)",
            f"{m:.2f}",
            f"{b:.2f} grep -c",
            b / m,
            ">= 1",
            b / m >= 1,
        )
    )
    ctx.rows.append(
        Row(
            "2",
            "  the same, pushed through the API (s)",
            f"{a:.2f}",
            f"{b:.2f} grep -c",
            b / a,
            ">= 1",
            b / a >= 1,
        )
    )
    ctx.rows.append(
        Row(
            "2",
            "  for reference: import redis, rq (s)",
            f"{floor:.2f}",
            f"{b:.2f} grep -c",
            b / floor,
            "-",
            None,
        )
    )
    ctx.rss["grep -c"] = bench_scan.peak_rss(["grep", "-c", PATTERN, path], env)


def command_seconds(ctx, argv, runs=5):
    """Median time of a command run in the bench's environment, its output thrown away: for the
    start-up a push pays before it does anything."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, env=ctx.logjobs.env(), check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return median(times)


def case_kernel(ctx):
    s = ctx.size
    print(
        f"\n[kernel] scanner.scan in one process vs `grep -a -c -F {PATTERN}`, {s.big_mb} MB logs "
        f"in the page cache, {ctx.kernel_rounds} rounds"
    )
    for name in ("dense", "sparse"):
        path = big_log(ctx.corpora, name, s.big_mb, ctx.seed)
        g_time, g_count, g_rss = bench_scan.time_grep("grep", path, ctx.kernel_rounds)
        s_time, s_count, s_rss = bench_scan.time_scan(path, ctx.kernel_rounds, "native")
        l_time, l_count, _ = bench_scan.time_scan(path, ctx.kernel_rounds, "native", lines=True)
        check(f"kernel, {name}", s_count, g_count)
        check(f"kernel with the line total, {name}", l_count, g_count)
        size = os.path.getsize(path) / MB
        print(
            f"  {name}: scanner {s_time:.3f} s ({size / s_time:.0f} MB/s, peak {mb(s_rss)})   "
            f"grep {g_time:.3f} s ({size / g_time:.0f} MB/s, peak {mb(g_rss)})   "
            f"scanner counting every line too {l_time:.3f} s ({size / l_time:.0f} MB/s)",
            flush=True,
        )
        ctx.rows.append(
            Row(
                "3",
                f"scan kernel, {name} (MB/s per core)",
                f"{size / s_time:.0f}",
                f"{size / g_time:.0f} grep -F",
                g_time / s_time,
                ">= 0.5",
                g_time / s_time >= 0.5,
            )
        )
        ctx.rss[f"scanner ({name})"] = s_rss
        ctx.rss[f"grep -c -F ({name})"] = g_rss


def case_memory(ctx):
    s = ctx.size
    dense = big_log(ctx.corpora, "dense", s.big_mb, ctx.seed)
    gz = dense + ".gz"
    compress(dense, gz)
    print(
        f"\n[memory] one rq worker scanning the {s.big_mb} MB dense log whole (--split-size 0), "
        f"then its gzip"
    )
    lj = ctx.logjobs.start(workers=1, group="memory")
    try:
        time.sleep(1.0)  # let it settle into its idle loop
        idle = _status_kb(lj.workers[0].pid, "VmRSS:")
        for path in (dense, gz):
            lj.end_to_end(["--split-size", "0", path], 1 + (path == gz), [])
    finally:
        lj.stop()
    peak = ctx.watch.peak.get("memory", idle)
    over = (peak - idle) / MB
    print(
        f"  idle worker {mb(idle)}; peak of the worker and its work-horses {mb(peak)}: +{over:.0f} "
        f"MB",
        flush=True,
    )
    ctx.rows.append(
        Row(
            "4",
            "worker peak RSS over idle (MB)",
            f"+{over:.0f}",
            f"idle {idle / MB:.0f}, peak {peak / MB:.0f}",
            None,
            "<= 64",
            over <= 64,
        )
    )


def case_lag(ctx):
    lags = sorted(ctx.lags)
    if not lags:
        print("\n[lag] no events: run it with the small or big case")
        return
    p50, p99, worst = lags[len(lags) // 2], lags[int(len(lags) * 0.99)], lags[-1]
    print(
        f"\n[lag] finished event -> its row in the status DB, over {len(lags)} events of the "
        f"end-to-end runs: "
        f"median {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {worst * 1000:.0f} ms"
    )
    ctx.rows.append(
        Row(
            "5",
            "mirror lag, p50 / p99 / max (ms)",
            f"{p50 * 1000:.0f} / {p99 * 1000:.0f} / {worst * 1000:.0f}",
            f"{len(lags)} events",
            None,
            "< 1000",
            worst < 1,
        )
    )


def case_gzip(ctx):
    s = ctx.size
    dense = big_log(ctx.corpora, "dense", s.big_mb, ctx.seed)
    gz = dense + ".gz"
    compress(dense, gz)
    size = os.path.getsize(dense) / MB
    print(
        f"\n[gzip] scanner.scan of the gzip of the dense log ({os.path.getsize(gz) / MB:.0f} MB, "
        f"{size:.0f} MB "
        f"inflated) vs Python's gzip module reading and counting it, {ctx.kernel_rounds} rounds"
    )
    s_time, s_count, s_rss = bench_scan.time_scan(gz, ctx.kernel_rounds, "native")
    out = subprocess.run(
        [sys.executable, "-c", GZIP_BASELINE, gz, PATTERN, str(ctx.kernel_rounds)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    base = json.loads(out)
    b_time = median(base["times"])
    z_time, z_count, _ = bench_scan.time_grep("zgrep", gz, 1)
    check("gzip, scanner", s_count, z_count)
    check("gzip, python gzip", base["count"], z_count)
    print(
        f"  scanner {s_time:.2f} s ({size / s_time:.0f} MB/s, peak {mb(s_rss)})   python gzip "
        f"{b_time:.2f} s ({size / b_time:.0f} MB/s, peak {mb(base['rss'])})   zgrep {z_time:.2f} s "
        "(for reference)",
        flush=True,
    )
    ctx.rows.append(
        Row(
            "6",
            "gzip scan (inflated MB/s)",
            f"{size / s_time:.0f}",
            f"{size / b_time:.0f} py gzip",
            b_time / s_time,
            ">= 2",
            b_time / s_time >= 2,
        )
    )
    ctx.rss["scanner (gzip)"] = s_rss
    ctx.rss["python gzip"] = base["rss"]


# The analysis as one would write it in plain Python: a line at a time, a regex for the timestamp
# and level at the line's start, the masks applied to ERROR and FATAL messages, Counters.
ANALYSIS_BASELINE = r"""
import collections, json, re, sys, time
path, limit, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
HEAD = re.compile(rb"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d)\S* +(?:\S+ +){0,2}?\[?"
                  rb"(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL|CRITICAL)\]?:?(?= |$)", re.I)
MASKS = [(re.compile(rb'"[^"]*"'), b"<STR>"),
         (re.compile(rb"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), b"<IP>"),
         (re.compile(rb"\b0x[0-9a-f]+\b|\b[0-9a-f]{8,}\b", re.I), b"<HEX>"),
         (re.compile(rb"\d+"), b"<NUM>")]
times = []
for _ in range(rounds):
    t = time.perf_counter()
    levels, minutes, templates = collections.Counter(), collections.Counter(), collections.Counter()
    read = 0
    with open(path, "rb") as f:
        for line in f:
            read += len(line)
            if read > limit:
                break
            m = HEAD.match(line)
            if not m:
                continue
            level = m[2].upper()
            levels[level] += 1
            minutes[m[1], level] += 1
            if level in (b"ERROR", b"FATAL"):
                message = line[m.end():].strip()
                for rx, mask in MASKS:
                    message = rx.sub(mask, message)
                templates[level, message] += 1
    times.append(time.perf_counter() - t)
print(json.dumps({"times": times, "levels": {k.decode(): n for k, n in levels.items()}}))
"""

ANALYSIS_PROBE = r"""
import json, sys, time
from logjobs import scanner
path, limit, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "rb") as f:  # the whole lines in the first `limit` bytes
    f.seek(limit - 65536)
    end = limit - 65536 + f.read(65536).rindex(b"\n") + 1
times = []
for _ in range(rounds):
    t = time.perf_counter()
    r = scanner.scan(path, ["ERROR"], 0, end, analyse=True)
    times.append(time.perf_counter() - t)
with open("/proc/self/status") as f:
    rss = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
print(json.dumps({"times": times, "levels": r.analysis["levels"], "rss": rss, "bytes": r.bytes,
                  "templates": len(r.analysis["messages"]), "overflow": r.analysis["overflow"]}))
"""


def case_analysis(ctx):
    s = ctx.size
    limit = s.analysis_mb * MB
    print(
        "\n[analysis] scanner.scan with the analysis vs a plain per-line Python loop (re, "
        f"Counter), on the first {s.analysis_mb} MB of each log, {ctx.kernel_rounds} rounds"
    )
    for name in ("dense", "sparse"):
        path = big_log(ctx.corpora, name, s.big_mb, ctx.seed)
        mine = json.loads(
            subprocess.run(
                [sys.executable, "-c", ANALYSIS_PROBE, path, str(limit), str(ctx.kernel_rounds)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        base = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    ANALYSIS_BASELINE,
                    path,
                    str(mine["bytes"]),
                    str(ctx.kernel_rounds),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        check(f"analysis, {name}: lines per level", mine["levels"], base["levels"])
        m_time, b_time, size = median(mine["times"]), median(base["times"]), mine["bytes"] / MB
        print(
            f"  {name}: analysis {m_time:.2f} s ({size / m_time:.0f} MB/s, {mine['templates']} "
            f"templates + {mine['overflow']} lines over the cap, peak {mb(mine['rss'])})   "
            f"per-line loop {b_time:.2f} s ({size / b_time:.0f} MB/s)",
            flush=True,
        )
        ctx.rows.append(
            Row(
                "A",
                f"analysis, {name} (MB/s per core)",
                f"{size / m_time:.0f}",
                f"{size / b_time:.0f} per-line re",
                b_time / m_time,
                "-",
                None,
            )
        )


def mb(n):
    return "-" if n is None else f"{n / MB:.0f} MB"


# -- the run --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Context:
    size: Size
    seed: int
    workdir: str
    corpora: str
    no_celery: bool
    kernel_rounds: int
    nice: int
    server: object = None
    logjobs: Logjobs = None
    watch: MemoryWatch = None
    rows: list = dataclasses.field(default_factory=list)
    lags: list = dataclasses.field(default_factory=list)
    rss: dict = dataclasses.field(default_factory=dict)


def versions():
    grep = subprocess.run(
        ["grep", "--version"], capture_output=True, text=True
    ).stdout.splitlines()[0]
    import rq

    return f"Python {platform.python_version()}, rq {rq.VERSION}, {grep}, {os.cpu_count()} CPUs"


def load():
    """The load average: on a shared machine, other work skews every figure; this says how much."""
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def summary(ctx, title):
    print(f"\n{title}")
    print(f"{'':2} {'case':40} {'logjobs':>20} {'baseline':>22} {'ratio':>6} {'target':>7}  met")
    for r in sorted(ctx.rows, key=lambda r: r.case):
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        print(
            f"{r.case:2} {r.what:40} {r.logjobs:>20} {r.baseline:>22} {ratio:>6} {r.target:>7}  "
            f"{met}"
        )
    peaks = dict(ctx.rss)
    names = {
        "worker": "rq worker + horses",
        "memory": "rq worker + horses, whole big files",
        "mirror": "logjobs mirror",
        "dashboard": "logjobs dashboard",
        "celery": "celery worker (+ pool)",
    }
    for group, value in ctx.watch.peak.items():
        peaks[names.get(group, group)] = value
    print(
        "peak RSS (largest single process): " + ", ".join(f"{k} {mb(v)}" for k, v in peaks.items())
    )


def byte_compile():
    """Compile logjobs' modules, as `pip install` does for a wheel. An editable install run under
    PYTHONDONTWRITEBYTECODE (containers often set it) would compile them again in every push and in
    every work-horse, and the bench would time that instead of logjobs."""
    compileall.compile_dir(os.path.dirname(logjobs.__file__), quiet=1)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="small sizes, one round: proves it works, fast"
    )
    ap.add_argument(
        "--rounds",
        type=int,
        help="rounds per case (default 5; 1 with --quick, where the kernel and gzip still run 3)",
    )
    ap.add_argument("--only", metavar="CASES", help=f"comma-separated subset of: {','.join(CASES)}")
    ap.add_argument(
        "--dir",
        help="keep corpora here and reuse them across runs (default: a temporary "
        "directory, removed at the end)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--small-files",
        type=int,
        metavar="N",
        help="number of small logs (default 2000; 200 with "
        "--quick): more of them sustain the load longer",
    )
    ap.add_argument(
        "--big-mb",
        type=int,
        metavar="MB",
        help="size of the big logs (default 850; 24 with --quick)",
    )
    ap.add_argument(
        "--split-size",
        type=int,
        metavar="BYTES",
        help="`logjobs push --split-size` in the big case (default: logjobs' own, 64 MiB)",
    )
    ap.add_argument(
        "--no-celery", action="store_true", help="skip the Celery baseline (and its set-up)"
    )
    ap.add_argument(
        "--nice",
        type=int,
        default=10,
        metavar="N",
        help="niceness of the rq and Celery workers (default 10, as conf/'s units run rq workers; "
        "0: that of the bench)",
    )
    ap.add_argument("--json", metavar="FILE", help="also write the summary rows as JSON")
    args = ap.parse_args()
    size = QUICK if args.quick else FULL
    if args.rounds:
        size = dataclasses.replace(size, rounds=args.rounds)
    if args.small_files:
        size = dataclasses.replace(size, files=args.small_files)
    if args.big_mb:
        size = dataclasses.replace(size, big_mb=args.big_mb)
    if args.split_size is not None:
        size = dataclasses.replace(size, split_bytes=args.split_size)
    cases = args.only.split(",") if args.only else list(CASES)
    unknown = set(cases) - set(CASES)
    if unknown:
        ap.error(f"unknown case(s) {', '.join(sorted(unknown))}; choose from {', '.join(CASES)}")
    if "lag" in cases and not {"small", "big"} & set(cases):
        cases.append("small")  # lag is measured during the end-to-end runs

    byte_compile()
    workdir = tempfile.mkdtemp(prefix="logjobs-bench-")
    corpora = args.dir or os.path.join(workdir, "corpora")
    os.makedirs(corpora, exist_ok=True)
    ctx = Context(
        size,
        args.seed,
        workdir,
        corpora,
        args.no_celery,
        kernel_rounds=max(size.rounds, 3),
        nice=args.nice,
    )
    title = (
        f"logjobs benchmark, {'quick' if args.quick else 'full'} size, medians of {size.rounds} "
        f"round(s) "
        f"({ctx.kernel_rounds} for the kernel and gzip), workers at nice {args.nice}; {versions()}"
    )
    print(f"{title}\n{load()} at the start", flush=True)
    ctx.server = RedisServer(os.path.join(workdir, "redis"), persist=False).start()
    ctx.watch = MemoryWatch()
    ctx.watch.start()
    ctx.logjobs = Logjobs(ctx.server, workdir, ctx.watch, args.nice)
    started, finished = time.monotonic(), False
    try:
        # lag is measured during small and big, so it is reported after them.
        for case in ("small", "big", "kernel", "memory", "gzip", "analysis", "lag"):
            if case in cases:
                globals()[f"case_{case}"](ctx)
        finished = True
    finally:
        ctx.logjobs.stop()
        ctx.watch.stop()
        ctx.server.stop()
        if not args.dir:
            shutil.rmtree(corpora, ignore_errors=True)
        if finished:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"the processes' logs are kept in {workdir}/logs", file=sys.stderr)
    summary(
        ctx,
        f"summary ({time.monotonic() - started:.0f} s, {load()}; ratio = logjobs speed / baseline "
        f"speed)",
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dataclasses.asdict(r) for r in ctx.rows], f, indent=2)


if __name__ == "__main__":
    main()
