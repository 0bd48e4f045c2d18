"""The worker commands of the shipped systemd and supervisor units, run as their supervisor runs
them."""

import configparser
import os
import re
import shlex
import signal
import socket
import time

import pytest

from logjobs.rqsafe import WORKER_ENV

from helpers import BIN

CONF = os.path.join(os.path.dirname(__file__), os.pardir, "conf")
INSTALLED = "/opt/logjobs/.venv/bin/"  # where the units expect logjobs; the tests' venv stands in


def systemd_command(unit, host="web1.example.com", instance="1"):
    """The unit's ExecStart as systemd runs it: its specifiers resolved, `$$` unescaped to `$`."""
    with open(os.path.join(CONF, "systemd", unit)) as f:
        line = next(line for line in f if line.startswith("ExecStart="))
    specifiers = {"%H": host, "%l": host.split(".")[0], "%i": instance, "$$": "$"}
    command = re.sub(
        r"%[Hli]|\$\$", lambda m: specifiers[m.group()], line.removeprefix("ExecStart=").strip()
    )
    return shlex.split(command.replace(INSTALLED, BIN + os.sep))


def systemd_environment(unit, **overrides):
    """The environment the unit gives its command (its Environment= lines), over the tests' own,
    without the worker classes the tests' workers get: what the unit says is what its worker runs
    with."""
    env = {k: v for k, v in os.environ.items() if k not in WORKER_ENV}
    with open(os.path.join(CONF, "systemd", unit)) as f:
        env.update(
            line.removeprefix("Environment=").strip().split("=", 1)
            for line in f
            if line.startswith("Environment=")
        )
    return {**env, **overrides}


def supervisor_environment(program="logjobs-worker", **overrides):
    parser = configparser.RawConfigParser()
    parser.read(os.path.join(CONF, "supervisor", "logjobs.conf"))
    pairs = re.findall(r'(\w+)="([^"]*)"', parser.get(f"program:{program}", "environment"))
    return {
        **{k: v for k, v in os.environ.items() if k not in WORKER_ENV},
        **dict(pairs),
        **overrides,
    }


def supervisor_command(program="logjobs-worker", host="web1", process_num=0):
    """The program's command as supervisord runs it: its %(...)s expanded, split as a shell
    would."""
    parser = configparser.RawConfigParser()
    parser.read(os.path.join(CONF, "supervisor", "logjobs.conf"))
    command = parser.get(f"program:{program}", "command") % {
        "host_node_name": host,
        "process_num": process_num,
    }
    return shlex.split(command.replace(INSTALLED, BIN + os.sep))


def registered(conn):
    return {name.decode().removeprefix("rq:worker:") for name in conn.smembers("rq:workers")}


UNITS = [
    (
        systemd_command("logjobs-worker@.service"),
        systemd_environment("logjobs-worker@.service"),
        r"web1\.example\.com-1-\d+",
    ),
    (
        systemd_command("logjobs-node-worker@.service"),
        systemd_environment("logjobs-node-worker@.service"),
        r"web1-1-\d+",
    ),
    (supervisor_command(), supervisor_environment(), r"web1-0-\d+"),
]


@pytest.mark.parametrize("command, env, name", UNITS)
def test_a_worker_sigkilled_under_its_unit_is_back_at_once(cluster, conn, command, env, name):
    """RQ keeps a SIGKILLed worker's name registered for 8 minutes and refuses it to a new worker: a
    unit that named its workers by host and instance alone could not restart one for that long."""
    env = dict(env, RQ_REDIS_URL=cluster.server.url, PATH=cluster.env["PATH"])
    worker = cluster.supervised(lambda: cluster.spawn(command, "unit-worker", env=env))
    first = cluster.wait_for(
        lambda: registered(conn), timeout=30, what="the unit's worker to register"
    )
    assert all(re.fullmatch(name, n) for n in first), first
    cluster.kill_tree(worker.proc, signal.SIGKILL)
    again = cluster.wait_for(
        lambda: registered(conn) - first, timeout=30, what="the restarted worker to register"
    )
    assert all(re.fullmatch(name, n) for n in again), again
    assert worker.proc.poll() is None  # listening, not refused and exiting again


@pytest.mark.parametrize("command, env, name", UNITS)
def test_a_worker_under_its_unit_runs_logjobs_jobs_and_refuses_others(
    cluster, conn, tmp_path, command, env, name
):
    """The unit's environment alone makes its worker safe: a foreign job fails unrun, a scan outside
    its roots fails, and a scan inside them is counted."""
    from rq import Queue

    roots = tmp_path / "logs"
    roots.mkdir()
    (roots / "a.log").write_text("ERROR\n")
    env = dict(
        env, RQ_REDIS_URL=cluster.server.url, PATH=cluster.env["PATH"], LOGJOBS_ROOTS=str(roots)
    )
    cluster.spawn(command, "unit-worker", env=env)
    cluster.mirror()
    foreign = Queue("default", connection=conn).enqueue(os.mkdir, str(tmp_path / "ran"))
    (tmp_path / "outside.log").write_text("ERROR\n")
    out = cluster.run(
        "push", "--wait", str(roots / "a.log"), str(tmp_path / "outside.log"), timeout=60
    )
    assert "finished 1, failed 1" in out.stdout and "outside the allowed roots" in out.stdout, (
        out.stdout
    )
    assert foreign.get_status(refresh=True) == "failed" and not (tmp_path / "ran").exists()


def test_an_idle_worker_stops_within_seconds_of_sigterm(cluster, conn):
    """RQ 3.0's command listener waits 60 s for a message, and a warm shutdown waited it out
    (redis-py's PubSubWorkerThread.stop joins it unbounded): a SIGTERMed idle worker took up to a
    minute to exit."""
    command, env, _ = UNITS[0]
    worker = cluster.spawn(
        command,
        "unit-worker",
        env=dict(env, RQ_REDIS_URL=cluster.server.url, PATH=cluster.env["PATH"]),
    )
    (name,) = cluster.wait_for(lambda: registered(conn), timeout=30, what="the worker to register")
    cluster.wait_for(
        lambda: conn.hget(f"rq:worker:{name}", "state") == b"idle", what="the worker idle"
    )
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    assert time.monotonic() - started < 5


def test_a_worker_named_by_no_one_is_named_by_its_host_and_pid(cluster, conn):
    """`rq worker high default low` as README.md starts it: RQ would name it a bare random id,
    which says nothing on the dashboard or in a file's history about where a scan ran."""
    worker = cluster.spawn(
        [os.path.join(BIN, "rq"), "worker", "high", "default", "low"], "plain-worker"
    )
    (name,) = cluster.wait_for(lambda: registered(conn), timeout=30, what="the worker to register")
    assert re.fullmatch(rf"{re.escape(socket.gethostname())}-{worker.pid}-[0-9a-f]{{6}}", name)
