"""The worker commands of the shipped systemd and supervisor units, run as their supervisor runs them."""

import configparser
import os
import re
import shlex
import signal

import pytest

from conftest import BIN

CONF = os.path.join(os.path.dirname(__file__), os.pardir, "conf")
INSTALLED = "/opt/logjobs/.venv/bin/"  # where the units expect logjobs; the tests' venv stands in


def systemd_command(unit, host="web1.example.com", instance="1"):
    """The unit's ExecStart as systemd runs it: its specifiers resolved, `$$` unescaped to `$`."""
    with open(os.path.join(CONF, "systemd", unit)) as f:
        line = next(line for line in f if line.startswith("ExecStart="))
    specifiers = {"%H": host, "%l": host.split(".")[0], "%i": instance, "$$": "$"}
    command = re.sub(r"%[Hli]|\$\$", lambda m: specifiers[m.group()], line.removeprefix("ExecStart=").strip())
    return shlex.split(command.replace(INSTALLED, BIN + os.sep))


def supervisor_command(program="logjobs-worker", host="web1", process_num=0):
    """The program's command as supervisord runs it: its %(...)s expanded, split as a shell would."""
    parser = configparser.RawConfigParser()
    parser.read(os.path.join(CONF, "supervisor", "logjobs.conf"))
    command = parser.get(f"program:{program}", "command") % {"host_node_name": host, "process_num": process_num}
    return shlex.split(command.replace(INSTALLED, BIN + os.sep))


def registered(conn):
    return {name.decode().removeprefix("rq:worker:") for name in conn.smembers("rq:workers")}


@pytest.mark.parametrize("command, name", [
    (systemd_command("logjobs-worker@.service"), r"web1\.example\.com-1-\d+"),
    (systemd_command("logjobs-node-worker@.service"), r"web1-1-\d+"),
    (supervisor_command(), r"web1-0-\d+"),
])
def test_a_worker_sigkilled_under_its_unit_is_back_at_once(cluster, conn, command, name):
    """RQ keeps a SIGKILLed worker's name registered for 8 minutes and refuses it to a new worker: a unit
    that named its workers by host and instance alone could not restart one for that long."""
    worker = cluster.supervised(lambda: cluster.spawn(command, "unit-worker"))
    first = cluster.wait_for(lambda: registered(conn), timeout=30, what="the unit's worker to register")
    assert all(re.fullmatch(name, n) for n in first), first
    cluster.kill_tree(worker.proc, signal.SIGKILL)
    again = cluster.wait_for(lambda: registered(conn) - first, timeout=30, what="the restarted worker to register")
    assert all(re.fullmatch(name, n) for n in again), again
    assert worker.proc.poll() is None  # listening, not refused and exiting again
