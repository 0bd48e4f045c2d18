"""Fixtures: a private redis-server per test, and real `rq worker` / `logjobs` processes around it."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import redis

from logjobs.embedded import RedisServer

BIN = os.path.dirname(sys.executable)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def conn(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


class Cluster:
    """The processes a user runs, started the way a user starts them, around one private Redis."""

    def __init__(self, server, tmp_path):
        self.server, self.tmp = server, tmp_path
        self.db = str(tmp_path / "status.db")
        self.procs = []
        self.env = dict(os.environ, LOGJOBS_REDIS_URL=server.url, RQ_REDIS_URL=server.url, LOGJOBS_DB=self.db,
                        PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
        self.env.pop("LOGJOBS_CONFIG", None)

    def run(self, *args, input=None, check=False, timeout=120):
        """`logjobs ARGS...` as a user types it; returns the CompletedProcess."""
        proc = subprocess.run([os.path.join(BIN, "logjobs"), *args], input=input, capture_output=True, text=True,
                              env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"logjobs {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args):
        return json.loads(self.run(*args, check=True).stdout)

    def spawn(self, args, name):
        log = open(self.tmp / f"{name}.log", "ab")
        proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=self.tmp)
        log.close()
        self.procs.append(proc)
        return proc

    def worker(self, *queues, name=None):
        """A plain `rq worker high default low`, configured only by RQ_REDIS_URL."""
        name = name or f"w{len(self.procs)}"
        return self.spawn([os.path.join(BIN, "rq"), "worker", "--name", name, *(queues or ("high", "default", "low"))],
                          name)

    def mirror(self):
        return self.spawn([os.path.join(BIN, "logjobs"), "-v", "mirror"], f"mirror{len(self.procs)}")

    def report(self):
        self.run("mirror", "--once", check=True)
        return {row["path"]: row for row in self.json("report", "--json")}

    def history(self, job_id):
        self.run("mirror", "--once", check=True)
        return self.json("show", "--json", job_id)["history"]

    def wait_for(self, predicate, timeout=60, interval=0.2, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def kill_tree(self, proc, sig=signal.SIGKILL):
        """Signal a worker and its work-horse (which RQ puts in a process group of its own)."""
        try:
            family = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
        except psutil.NoSuchProcess:
            return
        for p in family:
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        proc.wait(10)

    def stop_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                self.kill_tree(proc, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill_tree(proc)

    def logs(self):
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log"))


@pytest.fixture
def cluster(redis_server, tmp_path):
    c = Cluster(redis_server, tmp_path)
    yield c
    c.stop_all()
