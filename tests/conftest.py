"""Fixtures: a private redis-server per test, and real `rq worker` / `logjobs` processes around
it."""

import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import psutil
import pytest
import redis

from logjobs.embedded import RedisServer, free_port
from logjobs.rqsafe import WORKER_ENV

from helpers import BIN

#: Fixtures that start real processes: a test using one is `slow` (bin/test -m "not slow" skips it).
SLOW_FIXTURES = {
    "cluster",
    "redis_server",
    "conn",
    "postgres_url",
    "browser",
    "hosts",
    "running",
    "acl_redis",
}


def pytest_collection_modifyitems(items):
    """Mark what a test's fixtures say of it: real processes are slow, a browser or namespaces
    too."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if (
            fixtures & SLOW_FIXTURES
            or item.get_closest_marker("browser")
            or item.get_closest_marker("netns")
        ):
            item.add_marker(pytest.mark.slow)
        if "browser" in fixtures:
            item.add_marker(pytest.mark.browser)
        if "hosts" in fixtures:
            item.add_marker(pytest.mark.netns)


@pytest.fixture(scope="session")
def postgres_url():
    """A private PostgreSQL server on a free port, for the session (never the machine's own)."""
    if os.environ.get("LOGJOBS_TEST_POSTGRES_URL"):
        yield os.environ["LOGJOBS_TEST_POSTGRES_URL"]
        return
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    bindir = bindirs[-1] if bindirs else os.path.dirname(shutil.which("initdb") or "")
    if not bindir:
        pytest.skip("no PostgreSQL server binaries (initdb): apt-get install postgresql")
    user = None
    if os.getuid() == 0:  # initdb refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a 'postgres' user to run PostgreSQL as")
    data = tempfile.mkdtemp(prefix="logjobs-pg-")
    if user:
        os.chown(data, user.pw_uid, user.pw_gid)
    as_user = (lambda: (os.setgid(user.pw_gid), os.setuid(user.pw_uid))) if user else None
    subprocess.run(
        [
            os.path.join(bindir, "initdb"),
            "-D",
            data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
        preexec_fn=as_user,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            os.path.join(bindir, "postgres"),
            "-D",
            data,
            "-p",
            str(port),
            "-k",
            data,
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=as_user,
    )
    import psycopg2

    deadline = time.monotonic() + 30
    while True:
        try:
            admin = psycopg2.connect(
                host="127.0.0.1", port=port, user="postgres", dbname="postgres"
            )
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.2)
    admin.autocommit = True
    admin.cursor().execute("CREATE DATABASE logjobs")
    admin.close()
    yield f"postgresql://postgres@127.0.0.1:{port}/logjobs"
    server.terminate()
    server.wait(30)
    shutil.rmtree(data, ignore_errors=True)


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


class Supervised(threading.Thread):
    """Restart a process whenever it exits, as systemd's Restart=always does (RestartSec=1)."""

    def __init__(self, cluster, start):
        super().__init__(daemon=True)
        self.cluster, self.start_process = cluster, start
        self.proc, self.restarts, self.stopping = start(), 0, threading.Event()

    def run(self):
        while not self.stopping.wait(0.2):
            if self.proc.poll() is not None:
                self.stopping.wait(1)
                if not self.stopping.is_set():
                    self.restarts += 1
                    self.proc = self.start_process()

    def stop(self):
        self.stopping.set()
        self.join()
        if self.proc.poll() is None:
            self.cluster.kill_tree(self.proc, signal.SIGTERM)


class Cluster:
    """The processes a user runs, started the way a user starts them, around one private Redis."""

    def __init__(self, server, tmp_path):
        self.server, self.tmp = server, tmp_path
        self.db = str(tmp_path / "status.db")
        self.procs, self.supervisors = [], []
        # As the units in conf/ set it (WORKER_ENV: the classes that keep workers safe).
        self.env = dict(
            os.environ,
            LOGJOBS_REDIS_URL=server.url,
            RQ_REDIS_URL=server.url,
            LOGJOBS_DB=self.db,
            PATH=BIN + os.pathsep + os.environ.get("PATH", ""),
            **WORKER_ENV,
        )
        self.env.pop("LOGJOBS_CONFIG", None)

    def run(self, *args, input=None, check=False, timeout=120):
        """`logjobs ARGS...` as a user types it; returns the CompletedProcess. Past `timeout`, the
        command and whatever it started (selftest's workers) are killed, as Ctrl-C in a shell kills
        its group."""
        with subprocess.Popen(
            [os.path.join(BIN, "logjobs"), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            start_new_session=True,
        ) as running:
            try:
                out, err = running.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(running.pid, signal.SIGKILL)
                raise
        proc = subprocess.CompletedProcess(running.args, running.returncode, out, err)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"logjobs {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def json(self, *args):
        return json.loads(self.run(*args, check=True).stdout)

    def spawn(self, args, name, env=None):
        log = open(self.tmp / f"{name}.log", "ab")
        proc = subprocess.Popen(
            args,
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.tmp,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def worker(self, *queues, name=None, netns=None, url=None):
        """A plain `rq worker high default low`, configured only by RQ_REDIS_URL and WORKER_ENV (in
        network namespace `netns`, reaching Redis at `url`, if given)."""
        name = name or f"w{len(self.procs)}"
        args = [
            os.path.join(BIN, "rq"),
            "worker",
            "--name",
            name,
            *(queues or ("high", "default", "low")),
        ]
        return self.spawn(
            (["ip", "netns", "exec", netns] if netns else []) + args,
            name,
            env=dict(self.env, RQ_REDIS_URL=url) if url else None,
        )

    def supervised(self, start):
        """Run `start()` (e.g. `lambda: cluster.worker(name="w1")`) under a restarting
        supervisor."""
        supervisor = Supervised(self, start)
        supervisor.start()
        self.supervisors.append(supervisor)
        return supervisor

    def mirror(self):
        return self.spawn(
            [os.path.join(BIN, "logjobs"), "-v", "mirror"], f"mirror{len(self.procs)}"
        )

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
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # a warm shutdown that takes too long ends cold
            for p in family:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            proc.wait(10)

    def stop_all(self):
        for supervisor in self.supervisors:
            supervisor.stop()
        for proc in self.procs:
            if proc.poll() is None:
                self.kill_tree(proc, signal.SIGTERM)
        for proc in self.procs:
            proc.wait(20)

    def logs(self):
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log")
        )


@pytest.fixture
def cluster(redis_server, tmp_path):
    c = Cluster(redis_server, tmp_path)
    yield c
    c.stop_all()
