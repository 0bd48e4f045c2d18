"""A worker host cut off by a network partition: its job is recovered elsewhere, and when the host
comes back its late result neither duplicates nor overwrites the newer one.

Hosts are network namespaces joined by veth pairs to the namespace that runs Redis (this one); the
test needs root and `ip netns`, and sends traffic only to the namespaces it makes.
"""

import os
import secrets
import subprocess
import time

import psutil
import pytest

from logjobs.defaults import ATTEMPTS_KEY
from logjobs.embedded import RedisServer
from logjobs.rqsafe import Job

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/usr/sbin/ip") and not os.path.exists("/sbin/ip"),
    reason="network namespaces need root and iproute2",
)


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def hosts():
    """Two worker hosts, a and b: {name: (namespace, our veth end, address of Redis as it sees
    it)}."""
    tag = secrets.token_hex(2)
    made = {}
    try:
        for i, name in enumerate(("a", "b"), start=1):
            ns, here, there = f"lj{tag}{name}", f"lj{tag}{name}0", f"lj{tag}{name}1"
            subnet = f"10.231.{int(tag, 16) % 100 * 2 + i}"
            ip("netns", "add", ns)
            made[name] = (ns, here, f"{subnet}.1")
            ip("link", "add", here, "type", "veth", "peer", "name", there)
            ip("link", "set", there, "netns", ns)
            ip("addr", "add", f"{subnet}.1/24", "dev", here)
            ip("-n", ns, "addr", "add", f"{subnet}.2/24", "dev", there)
            for args in (
                ["link", "set", here, "up"],
                ["-n", ns, "link", "set", there, "up"],
                ["-n", ns, "link", "set", "lo", "up"],
            ):
                ip(*args)
        yield made
    finally:
        for ns, here, _ in made.values():
            subprocess.run(["ip", "link", "del", here], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def redis_server(tmp_path, hosts):
    """Redis on loopback and on our end of each host's link (overrides the plain fixture)."""
    server = RedisServer(
        tmp_path / "redis", also_bind=[addr for _, _, addr in hosts.values()]
    ).start()
    yield server
    server.stop()


def worker_on_host(cluster, hosts, name):
    ns, _, addr = hosts[name]
    return cluster.worker(
        name=f"host-{name}", netns=ns, url=f"redis://{addr}:{cluster.server.port}/0"
    )


def scanning_on_host_a(cluster, hosts, tmp_path):
    """(path, host a's worker process) once host a scans a 4 GB file of zeros (seconds to scan),
    pushed with retries at once, under a running mirror."""
    path = str(tmp_path / "big.log")
    with open(path, "wb") as f:
        f.truncate(4 << 30)
    host_a = worker_on_host(cluster, hosts, "a")
    cluster.mirror()
    cluster.run("push", "--split-size", "0", "--retry-intervals", "0", path, check=True)
    cluster.wait_for(
        lambda: cluster.report().get(path, {}).get("status") == "started", what="host a to start"
    )
    return path, host_a


def test_partitioned_host_is_recovered_and_its_late_result_ignored(cluster, hosts, tmp_path, conn):
    path, host_a = scanning_on_host_a(cluster, hosts, tmp_path)
    _, link_a, _ = hosts["a"]
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write("ERROR one\nERROR two\n")
    os.replace(tmp, path)  # host a goes on reading the old file; the retry reads this one
    ip(
        "link", "set", link_a, "down"
    )  # the partition: a's packets go nowhere, its TCP connections hang
    # Host a's scan is paused for the length of the partition, so that it ends (and reports) only
    # after the partition heals, whatever this machine's speed: that is the case to check.
    horse = cluster.wait_for(
        lambda: psutil.Process(host_a.pid).children(), what="host a's work-horse"
    )[0]
    horse.suspend()
    worker_on_host(cluster, hosts, "b")
    row = cluster.wait_for(
        lambda: (r := cluster.report()[path])["status"] == "finished" and r,
        timeout=60,
        what="host b to finish the recovered job",
    )
    assert (row["worker"], row["attempts"], row["counts"]) == ("host-b", 2, {"ERROR": 2})
    ip("link", "set", link_a, "up")
    horse.resume()

    def late_result():
        return [
            h
            for h in cluster.json("show", "--json", path)["history"]
            if h["worker"] == "host-a" and h["state"] == "finished"
        ]

    late = cluster.wait_for(late_result, timeout=120, interval=1, what="host a's late result")
    assert late[0]["attempt"] == 1 and late[0]["applied"] is False
    shown = cluster.run("show", path, check=True).stdout.splitlines()
    finished = {
        line.split()[4]: line.endswith("(too late: not applied)")
        for line in shown
        if " finished " in line
    }
    assert finished == {"host-a": True, "host-b": False}, shown
    rows = cluster.report()
    assert len(rows) == 1
    assert (rows[path]["worker"], rows[path]["attempts"], rows[path]["counts"]) == (
        "host-b",
        2,
        {"ERROR": 2},
    )
    # Nor does RQ hear of host a's attempt ending: its horse, handed on, leaves without RQ's
    # handling of its end, which would record a second result (or, had it failed, retry a job that
    # is finished).
    job = Job.fetch(rows[path]["job_id"], connection=conn)
    time.sleep(3)  # had host a's horse gone on into RQ's handling, it would have done so by now
    assert (job.get_status(), len(job.results()), conn.hget(ATTEMPTS_KEY, job.id)) == (
        "finished",
        1,
        b"2",
    )


def test_a_horse_that_ends_its_scan_while_cut_off_waits_then_leaves(cluster, hosts, tmp_path, conn):
    """Host a's scan ends during the partition: its results cannot be sent. Its attempt failed on
    that, and RQ, once Redis was back, retried the job from the horse's stale copy: a third run of a
    job that had been handed on and had finished. The horse now waits for Redis, finds the job
    handed on, and leaves."""
    path, host_a = scanning_on_host_a(cluster, hosts, tmp_path)
    _, link_a, _ = hosts["a"]
    horse = cluster.wait_for(
        lambda: psutil.Process(host_a.pid).children(), what="host a's work-horse"
    )[0]
    horse.suspend()
    ip("link", "set", link_a, "down")
    with open(path + ".new", "w") as f:
        f.write("ERROR one\n")
    os.replace(path + ".new", path)
    worker_on_host(cluster, hosts, "b")
    row = cluster.wait_for(
        lambda: (r := cluster.report()[path])["status"] == "finished" and r,
        timeout=60,
        what="host b to finish the recovered job",
    )
    assert (row["worker"], row["attempts"], row["counts"]) == ("host-b", 2, {"ERROR": 1})
    horse.resume()  # its scan ends, still cut off: its results wait for Redis
    log = tmp_path / "host-a.log"
    deadline = time.monotonic() + 120  # redis-py gives up on a command in 30-100 s
    while b"cannot reach Redis" not in log.read_bytes() and time.monotonic() < deadline:
        time.sleep(1)
    ip("link", "set", link_a, "up")
    cluster.wait_for(
        lambda: not horse.is_running() or horse.status() == psutil.STATUS_ZOMBIE,
        timeout=60,
        interval=0.5,
        what="host a's horse to leave",
    )
    assert b"was given up while cut off" in log.read_bytes()
    job = Job.fetch(row["job_id"], connection=conn)
    time.sleep(5)  # a retry by RQ of host a's attempt would have started by now
    assert (job.get_status(), len(job.results()), conn.hget(ATTEMPTS_KEY, job.id)) == (
        "finished",
        1,
        b"2",
    )
    assert cluster.report()[path]["counts"] == {"ERROR": 1}
