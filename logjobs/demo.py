"""`bin/demo`: the whole pipeline on generated logs, with a private Redis unless LOGJOBS_REDIS_URL
is set.

It runs what a user runs, as separate processes: two `rq worker high default low`, `logjobs mirror`,
`logjobs push --wait`, then `logjobs report`, `status` and `top` (of the warnings and errors: what
went wrong). Exit status 0 when every file finished.
"""

import argparse
import functools
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import redis

from .children import killed_with_parent, stops_with_parent
from .embedded import RedisServer
from .models import open_database
from .queries import status
from .queues import rq_command
from .rqsafe import environ_with_worker_classes
from .store import MirrorPresence

#: What the apps log, by level: message formats whose {fields} vary from line to line.
MESSAGES = {
    "DEBUG": ("cache miss for key user:{n}", "pool has {n} idle connections"),
    "INFO": ("request {uuid} served in {ms} ms", "user {n} logged in from {ip}", "job {n} done"),
    "WARN": ("retrying upstream call {n} of 5", "disk usage at {pct}% on /var/lib/{app}"),
    "ERROR": (
        "upstream {ip}:{port} timed out after {ms} ms",
        "payment {n} declined: card {hex} expired",
        "cannot open '/data/{app}/{n}.db': disk I/O error",
    ),
    "FATAL": ("out of memory allocating {n} bytes",),
}
LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "INFO", "WARN")
FATAL_RATE = 0.002


def _message(rng, level, app):
    return rng.choice(MESSAGES[level]).format(
        n=rng.randrange(100_000),
        ms=rng.randrange(1, 5000),
        pct=rng.randrange(80, 100),
        port=rng.randrange(8000, 8100),
        ip=f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
        hex=f"{rng.getrandbits(48):012x}",
        app=app,
        uuid=f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-a{rng.getrandbits(12):03x}-{rng.getrandbits(48):012x}",
    )


def log_lines(rng, n, error_rate=0.05, app="api"):
    """`n` plausible log lines in the app's format (Python logging, nginx's error log, JSON lines),
    one minute of them per 600 lines; about `error_rate` of them at ERROR."""
    for i in range(n):
        draw = rng.random()
        level = (
            "ERROR"
            if draw < error_rate
            else "FATAL"
            if draw > 1 - FATAL_RATE
            else rng.choice(LEVELS)
        )
        msg = _message(rng, level, app)
        minute, second = i // 600 % 60, i // 10 % 60
        if app == "web":
            yield (
                f"2026/11/27 12:{minute:02}:{second:02} [{level.lower()}] 311#0: *{i} {msg}, "
                f"client: 192.168.1.{i % 250}\n"
            )
        elif app == "billing":
            yield (
                json.dumps(
                    {
                        "ts": f"2026-11-27T12:{minute:02}:{second:02}.{i % 10}00Z",
                        "level": level.lower(),
                        "msg": msg,
                        "service": app,
                    }
                )
                + "\n"
            )
        else:
            stamp = f"2026-11-27 12:{minute:02}:{second:02},{i % 10}00"
            yield f"{stamp} {level} {app}[{rng.randrange(99)}]: {msg}\n"
            if level == "FATAL":  # with its traceback, whose lines have no level
                yield (
                    'Traceback (most recent call last):\n  File "/srv/app/worker.py", line 42, '
                    "in run\n"
                )


def write_corpus(root, seed=7, small=300, big_mb=160):
    """Small logs of three apps in three formats, rotated gzip archives, and one big log that push
    splits into ranges."""
    rng = random.Random(seed)
    for i in range(small):
        app = ("api", "web", "billing")[i % 3]
        os.makedirs(os.path.join(root, app), exist_ok=True)
        with open(os.path.join(root, app, f"{app}-{i:03}.log"), "w") as f:
            f.writelines(log_lines(rng, rng.randrange(20, 400), app=app))
    os.makedirs(os.path.join(root, "archive"), exist_ok=True)
    for i in range(12):
        with gzip.open(os.path.join(root, "archive", f"api.log.{i + 1}.gz"), "wt") as f:
            f.writelines(log_lines(rng, 5000))
    block = "".join(log_lines(rng, 20_000, error_rate=0.25)).encode()
    with open(os.path.join(root, "big.log"), "wb") as f:
        for _ in range(big_mb * (1 << 20) // len(block)):
            f.write(block)


def main(argv=None):
    """Run the demo; its exit status (130 when interrupted, with no traceback)."""
    try:
        return _demo(argv)
    except KeyboardInterrupt:
        print("demo: interrupted; stopped its Redis, workers and mirror", file=sys.stderr)
        return 130


def _demo(argv):
    parser = argparse.ArgumentParser(prog="bin/demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir", help="Keep the logs, database and Redis data here (default: a temporary folder)."
    )
    parser.add_argument(
        "--big-mb", type=int, default=160, help="Size of the one big log (default: 160)."
    )
    args = parser.parse_args(argv)
    work = args.dir or tempfile.mkdtemp(prefix="logjobs-demo-")
    os.makedirs(work, exist_ok=True)
    logs, db = os.path.join(work, "logs"), os.path.join(work, "status.db")
    print(f"demo: generating sample logs in {logs}")
    shutil.rmtree(logs, ignore_errors=True)
    write_corpus(logs, big_mb=args.big_mb)
    # SIGTERM ends the demo as Ctrl-C does: through the `finally` that stops what it started.
    signal.signal(signal.SIGTERM, _interrupted)
    server = None
    if not os.environ.get("LOGJOBS_REDIS_URL"):
        server = RedisServer(os.path.join(work, "redis"), die_with_parent=True).start()
        print(f"demo: started a private redis-server at {server.url}")
    url = os.environ.get("LOGJOBS_REDIS_URL") or server.url
    env = dict(
        environ_with_worker_classes(), LOGJOBS_REDIS_URL=url, RQ_REDIS_URL=url, LOGJOBS_DB=db
    )
    logjobs = [sys.executable, "-m", "logjobs"]
    procs = []
    # Its commands too stop with it, however it stops (they might otherwise wait on for workers).
    subprocess_run = functools.partial(subprocess.run, preexec_fn=stops_with_parent)
    try:
        for name in ("demo-1", "demo-2"):
            procs.append(
                _spawn(
                    rq_command(
                        "worker", "--name", f"{name}-{os.getpid()}", "high", "default", "low"
                    ),
                    env,
                    os.path.join(work, f"{name}.log"),
                )
            )
        procs.append(_spawn(logjobs + ["mirror"], env, os.path.join(work, "mirror.log")))
        _wait_for_mirror(url)  # else the first push says that no mirror runs
        started = time.monotonic()
        subprocess_run(
            logjobs + ["push", "--priority", "high", os.path.join(logs, "billing")],
            env=env,
            check=True,
        )
        subprocess_run(
            logjobs + ["push", "--priority", "low", os.path.join(logs, "archive")],
            env=env,
            check=True,
        )
        rest = [os.path.join(logs, name) for name in ("api", "web", "big.log")]
        pushed = subprocess_run(logjobs + ["push", "--wait", *rest], env=env)
        ok = _settle(env, db, logjobs) and pushed.returncode == 0
        elapsed = time.monotonic() - started
        subprocess_run(logjobs + ["report"], env=env, check=True)
        subprocess_run(logjobs + ["status"], env=env, check=True)
        what_went_wrong = ["--level", "warn", "--level", "error", "--level", "fatal"]
        subprocess_run(logjobs + ["top", "-n", "8", *what_went_wrong], env=env, check=True)
        print(
            f"demo: {'every file finished' if ok else 'some files did not finish'} "
            f"in {elapsed:.1f} s; status database: {db}"
            + ("" if args.dir else " (the sample logs are removed: --dir DIR keeps them)")
        )
        return 0 if ok else 1
    finally:
        # Stopping takes seconds at most (STOP_GRACE): a second Ctrl-C must not cut it short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            _stop(procs)
        finally:
            if server is not None:
                server.stop()
            if not args.dir:  # a temporary folder: the logs (170 MB) go, the database stays
                shutil.rmtree(logs, ignore_errors=True)


#: Seconds the demo's workers and mirror have to stop after SIGTERM, before SIGKILL.
STOP_GRACE = 10


def _stop(procs):
    """Stop the processes and whatever they started (each leads a process group: a worker and its
    work-horse): SIGTERM, then SIGKILL for what still runs after STOP_GRACE seconds."""
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"demo: {' '.join(map(str, proc.args))} ran on past SIGTERM: killed")
        _signal_group(proc, signal.SIGKILL)  # its leftovers too (a work-horse outliving it)
        proc.wait()


def _signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _wait_for_mirror(url, timeout=10):
    """Until the mirror marks itself alive in Redis (or `timeout` seconds pass)."""
    conn = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + timeout
        while MirrorPresence.alive(conn) is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        conn.close()


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def _settle(env, db, logjobs, timeout=120):
    """Wait until the database shows every file finished or failed; True if all finished."""
    deadline = time.monotonic() + timeout
    while True:
        subprocess.run(
            logjobs + ["mirror", "--once"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            preexec_fn=stops_with_parent,
        )
        database = open_database(db, create=False)
        with database.connection_context():
            jobs = status()["jobs"]
        database.close()
        if (
            not any(jobs[s] for s in ("queued", "scheduled", "started"))
            or time.monotonic() > deadline
        ):
            return jobs["failed"] == 0 and jobs["finished"] > 0
        time.sleep(0.5)


def _spawn(args, env, log):
    """A child of the demo's, leading a process group of its own, and killed by the kernel should
    the demo die without stopping it (a SIGKILL): a worker's work-horse goes with it."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            args,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=killed_with_parent,
        )


if __name__ == "__main__":
    sys.exit(main())
