"""`bin/demo`: the whole pipeline on generated logs, with a private Redis unless LOGJOBS_REDIS_URL is set.

It runs what a user runs, as separate processes: two `rq worker high default low`, `logjobs mirror`,
`logjobs push --wait`, then `logjobs report`. Exit status 0 when every file finished.
"""

import argparse
import gzip
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

from .embedded import RedisServer
from .models import open_database
from .views import status

LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR", "FATAL")
MESSAGES = ("request served in {n} ms", "user {n} logged in", "cache miss for key k{n}", "retrying upstream call {n}",
            "connection reset by peer {n}", "disk usage at {n}%", "payment {n} declined", "job {n} done")


def log_lines(rng, n, error_rate=0.05):
    """`n` plausible log lines; about `error_rate` of them at ERROR."""
    for i in range(n):
        level = "ERROR" if rng.random() < error_rate else rng.choice(LEVELS)
        msg = rng.choice(MESSAGES).format(n=rng.randrange(10_000))
        yield f"2026-11-27T12:{i // 600 % 60:02}:{i // 10 % 60:02}.{i % 10}00Z {level} app[{rng.randrange(99)}]: {msg}\n"


def write_corpus(root, seed=7, small=300, big_mb=160):
    """Small logs in three apps, rotated gzip archives, and one big log that push splits into ranges."""
    rng = random.Random(seed)
    for i in range(small):
        app = ("api", "web", "billing")[i % 3]
        os.makedirs(os.path.join(root, app), exist_ok=True)
        with open(os.path.join(root, app, f"{app}-{i:03}.log"), "w") as f:
            f.writelines(log_lines(rng, rng.randrange(20, 400)))
    os.makedirs(os.path.join(root, "archive"), exist_ok=True)
    for i in range(12):
        with gzip.open(os.path.join(root, "archive", f"api.log.{i + 1}.gz"), "wt") as f:
            f.writelines(log_lines(rng, 5000))
    block = "".join(log_lines(rng, 20_000, error_rate=0.25)).encode()
    with open(os.path.join(root, "big.log"), "wb") as f:
        for _ in range(big_mb * (1 << 20) // len(block)):
            f.write(block)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bin/demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="Keep the logs, database and Redis data here (default: a temporary folder).")
    parser.add_argument("--big-mb", type=int, default=160, help="Size of the one big log (default: 160).")
    args = parser.parse_args(argv)
    work = args.dir or tempfile.mkdtemp(prefix="logjobs-demo-")
    os.makedirs(work, exist_ok=True)
    logs, db = os.path.join(work, "logs"), os.path.join(work, "status.db")
    print(f"demo: generating sample logs in {logs}")
    shutil.rmtree(logs, ignore_errors=True)
    write_corpus(logs, big_mb=args.big_mb)
    server = None
    if not os.environ.get("LOGJOBS_REDIS_URL"):
        server = RedisServer(os.path.join(work, "redis")).start()
        print(f"demo: started a private redis-server at {server.url}")
    url = os.environ.get("LOGJOBS_REDIS_URL") or server.url
    env = dict(os.environ, LOGJOBS_REDIS_URL=url, RQ_REDIS_URL=url, LOGJOBS_DB=db)
    logjobs = [sys.executable, "-m", "logjobs"]
    procs = []
    try:
        for name in ("demo-1", "demo-2"):
            procs.append(_spawn([_rq(), "worker", "--name", f"{name}-{os.getpid()}", "high", "default", "low"],
                                env, os.path.join(work, f"{name}.log")))
        procs.append(_spawn(logjobs + ["mirror"], env, os.path.join(work, "mirror.log")))
        started = time.monotonic()
        subprocess.run(logjobs + ["push", "--priority", "high", os.path.join(logs, "billing")], env=env, check=True)
        subprocess.run(logjobs + ["push", "--priority", "low", os.path.join(logs, "archive")], env=env, check=True)
        rest = [os.path.join(logs, name) for name in ("api", "web", "big.log")]
        pushed = subprocess.run(logjobs + ["push", "--wait", *rest], env=env)
        ok = _settle(env, db, logjobs) and pushed.returncode == 0
        elapsed = time.monotonic() - started
        subprocess.run(logjobs + ["report"], env=env, check=True)
        subprocess.run(logjobs + ["status"], env=env, check=True)
        print(f"demo: {'every file finished' if ok else 'some files did not finish'} in {elapsed:.1f} s; "
              f"status database: {db}")
        return 0 if ok else 1
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        if server is not None:
            server.stop()


def _settle(env, db, logjobs, timeout=120):
    """Wait until the database shows every file finished or failed; True if all finished."""
    deadline = time.monotonic() + timeout
    while True:
        subprocess.run(logjobs + ["mirror", "--once"], env=env, check=True, stdout=subprocess.DEVNULL)
        database = open_database(db, create=False)
        with database.connection_context():
            jobs = status()["jobs"]
        database.close()
        if not any(jobs[s] for s in ("queued", "scheduled", "started")) or time.monotonic() > deadline:
            return jobs["failed"] == 0 and jobs["finished"] > 0
        time.sleep(0.5)


def _rq():
    return os.path.join(os.path.dirname(sys.executable), "rq")


def _spawn(args, env, log):
    with open(log, "ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
