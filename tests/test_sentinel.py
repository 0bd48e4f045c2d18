"""Redis high availability with Sentinel: the master is SIGKILLed mid-run, a replica takes over, and
workers (plain `rq worker -c settings` with RQ's SENTINEL dict), the mirror and push carry on."""

import os
import subprocess
import time

import pytest
import redis
from redis.sentinel import Sentinel

from logjobs.embedded import RedisServer, find_redis_server, free_port

from helpers import assert_exactly_once, corpus, final_rows

SERVICE = "logjobs"


@pytest.fixture
def redis_server(tmp_path):
    """The master, a replica, and three sentinels watching them (overrides the plain fixture)."""
    master = RedisServer(tmp_path / "master").start()
    replica = RedisServer(
        tmp_path / "replica", extra=("--replicaof", "127.0.0.1", str(master.port))
    ).start()
    sentinels = []
    for i in range(3):
        port, folder = free_port(), tmp_path / f"sentinel{i}"
        folder.mkdir()
        conf = folder / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {folder}\nsentinel monitor {SERVICE} 127.0.0.1 "
            f"{master.port} 2\nsentinel down-after-milliseconds {SERVICE} 1000\nsentinel "
            f"failover-timeout {SERVICE} 5000\n"
        )
        proc = subprocess.Popen(
            [find_redis_server(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sentinels.append((port, proc))
    master.sentinel_ports = [port for port, _ in sentinels]
    master.replica = replica
    yield master
    for _, proc in sentinels:
        proc.terminate()
        proc.wait(10)
    replica.stop()
    master.stop()


def test_sentinel_failover_mid_run(cluster, redis_server, tmp_path):
    ports = redis_server.sentinel_ports
    sentinel = Sentinel([("127.0.0.1", p) for p in ports], socket_timeout=1)
    cluster.wait_for(
        lambda: _replicas(sentinel) >= 1 and _sentinels(sentinel) >= 2,
        what="sentinels to see everyone",
    )
    url = "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in ports) + f"/{SERVICE}/0"
    cluster.env["LOGJOBS_REDIS_URL"] = url
    del cluster.env["RQ_REDIS_URL"]
    (tmp_path / "rqs.py").write_text(
        f"SENTINEL = "
        f"{{'INSTANCES': {[('127.0.0.1', p) for p in ports]!r}, 'MASTER_NAME': {SERVICE!r}, "
        "'DB': 0, 'SOCKET_TIMEOUT': 5}\n"
    )
    cluster.env["PYTHONPATH"] = str(tmp_path)
    rq = os.path.join(os.path.dirname(cluster.env["PATH"].split(os.pathsep)[0] + "/"), "rq")
    expected = corpus(tmp_path / "logs", small=200, sparse=8, sparse_bytes=1 << 30)
    for n in range(2):
        cluster.supervised(
            lambda n=n: cluster.spawn(
                [
                    rq,
                    "worker",
                    "-c",
                    "rqs",
                    "--name",
                    f"s{n}-{time.monotonic_ns()}",
                    "high",
                    "default",
                    "low",
                ],
                f"s{n}",
            )
        )
    cluster.supervised(cluster.mirror)
    cluster.run(
        "push", "--batch-files", "5", "--retry-intervals", "1", str(tmp_path / "logs"), check=True
    )
    cluster.wait_for(lambda: len(final_rows(cluster)) >= 20, timeout=60, what="some scans done")
    old = sentinel.discover_master(SERVICE)
    redis_server.stop(kill=True)  # the master dies
    new = cluster.wait_for(
        lambda: (m := _master(sentinel)) and m != old and m, timeout=60, what="a failover"
    )
    assert new[1] == redis_server.replica.port
    cluster.wait_for(
        lambda: len(final_rows(cluster)) == len(expected),
        timeout=180,
        interval=1,
        what="every file to end after the failover",
    )
    assert_exactly_once(cluster, expected, sentinel.master_for(SERVICE))


def _master(sentinel):
    try:
        return sentinel.discover_master(SERVICE)
    except redis.RedisError:
        return None


def _replicas(sentinel):
    try:
        return len(sentinel.discover_slaves(SERVICE))
    except redis.RedisError:
        return 0


def _sentinels(sentinel):
    try:
        return len(sentinel.sentinels[0].sentinel_sentinels(SERVICE)) + 1
    except redis.RedisError:
        return 0
