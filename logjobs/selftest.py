"""`logjobs selftest`: check a deployment's promises against its own Redis, mirror and database.

It pushes probe files with known counts into a queue of its own (so no other worker takes them),
runs its own `rq worker` processes on this host, and with `chaos` SIGKILLs the worker scanning a
long probe to see the job come back and finish elsewhere, exactly once. It then cleans up after
itself: its jobs, queue and workers go from Redis, and the mirror drops its probes' rows.
"""

import dataclasses
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

from . import events, outcomes, push, queues, rqsafe
from .children import killed_with_parent
from .defaults import DEFAULT_ABANDON_GRACE, DEFAULT_BEAT_TTL
from .exceptions import LogJobsError
from .mirror import LOCK_TIMEOUT
from .rqsafe import Queue, Worker, environ_with_worker_classes
from .store import Attempts, Heartbeats, MirrorPresence

#: The promise `chaos` checks: a dead worker's job is back in its queue within this many seconds.
RECOVERY_BOUND = 30
PROBES = {
    "plain.log": b"ERROR a\nINFO b\nERROR c\r\nx ERROR",
    "empty.log": b"",
    "nul.log": b"\0ERROR\0\n\xffERROR\n",
}
EXPECTED = {"plain.log": 3, "empty.log": 0, "nul.log": 2}


@dataclasses.dataclass
class Check:
    name: str
    ok: bool
    detail: str


def run(conn, redis_url, database_reader=None, chaos=False, timeout=120):
    """Run the checks; returns a list of Check. `database_reader(path)` returns a path's report
    row."""
    tag = secrets.token_hex(3)
    queue = f"logjobs-selftest-{tag}"
    folder = tempfile.mkdtemp(prefix=f"logjobs-selftest-{tag}-")
    procs, checks, pushes = [], [], []
    mirror_host = None
    try:
        mirror_host = _mirror_alive(conn)
        checks.append(
            Check(
                "a mirror is running",
                mirror_host is not None,
                f"on {mirror_host}"
                if mirror_host
                else f"none seen in {LOCK_TIMEOUT} s: start `logjobs mirror`; without it nothing "
                "reaches the database, retries wait, and dead workers' jobs wait for RQ's own "
                "10-minute cleanup",
            )
        )
        paths = []
        for name, data in PROBES.items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
            paths.append(os.path.join(folder, name))
        procs.append(
            _worker(redis_url, queue, f"selftest-{tag}-1", "--burst")
        )  # gone when the probes are done
        pushed = push.push(conn, paths, queue=queue, retry_intervals=(1,), any_queue=True)
        pushes.append(pushed)
        try:
            outcome = outcomes.wait(conn, pushed, poll=0.2, timeout=timeout)
        except LogJobsError as exc:
            raise LogJobsError(
                f"the probes did not finish: {exc}; is this host's `rq` working?"
            ) from None
        wrong = [
            o
            for o in outcome
            if o["status"] != "finished"
            or o["counts"].get("ERROR") != EXPECTED[os.path.basename(o["path"])]
        ]
        checks.append(
            Check(
                "probe files counted like grep -c",
                not wrong,
                f"{len(outcome)} files" if not wrong else f"wrong: {wrong[0]}",
            )
        )
        if database_reader is not None:
            checks.append(_check_rows(database_reader, paths, timeout=15))
        if chaos:
            checks += _chaos(
                conn, redis_url, queue, folder, tag, procs, pushes, database_reader, timeout
            )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        _clean_up(conn, queue, tag, pushes)
        shutil.rmtree(folder, ignore_errors=True)
    if database_reader is not None and mirror_host is not None:
        _wait_forgotten(database_reader, [p for pushed in pushes for p in pushed.files])
    return checks


def _clean_up(conn, queue, tag, pushes):
    """Take the probes' jobs, queue and workers out of Redis, and have the mirror drop their rows
    (after their other events: it applies them in order)."""
    for worker in Worker.all(connection=conn):
        if worker.name.startswith(f"selftest-{tag}-"):
            # killed: RQ would list it as alive until its worker_ttl (420 s)
            worker.register_death()
    job_ids = [job_id for pushed in pushes for job_id in pushed.job_ids]
    for job in rqsafe.Job.fetch_many(job_ids, connection=conn):
        if job is not None:
            job.delete(remove_from_queue=False)
    Queue(queue, connection=conn).delete(delete_jobs=False)
    # Its registries (finished, failed, canceled...), list of workers, and its workers' records
    # (RQ keeps a dead one's for a minute): every key RQ named by it.
    keys = [
        *conn.scan_iter(match=f"rq:*:{queue}", count=1000),
        *conn.scan_iter(match=f"rq:worker:selftest-{tag}-*", count=1000),
    ]
    if keys:
        conn.delete(*keys)
    events.forget(conn, [path for pushed in pushes for path in pushed.files])


def _wait_forgotten(database_reader, paths, timeout=10):
    """Until the mirror has dropped the probes' rows (the last one, since it applies in order)."""
    deadline = time.monotonic() + timeout
    while paths and database_reader(paths[-1]) and time.monotonic() < deadline:
        time.sleep(0.2)


def _chaos(conn, redis_url, queue, folder, tag, procs, pushes, database_reader, timeout):
    long_probe = os.path.join(folder, "long.log")
    with open(long_probe, "wb") as f:
        f.truncate(64 << 30)  # sparse: minutes of reading zeros, so the kill lands mid-scan
    victim = _worker(redis_url, queue, f"selftest-{tag}-victim")
    procs.append(victim)
    pushed = push.push(
        conn, [long_probe], queue=queue, split_bytes=0, retry_intervals=(0,), any_queue=True
    )
    pushes.append(pushed)
    job_id = pushed.files[long_probe][0]
    deadline = time.monotonic() + 60
    # Mid-scan: the job's own code has counted its attempt and started its heartbeat (RQ says
    # "started" a moment before, while it forks the work-horse).
    while not (Attempts(conn).get(job_id) and all(Heartbeats(conn).alive([job_id]))):
        if time.monotonic() > deadline:
            return [Check("chaos: a scan started to kill", False, "the long probe never started")]
        time.sleep(0.2)
    with open(long_probe + ".new", "wb") as f:
        f.write(b"ERROR after the crash\n")
    os.replace(long_probe + ".new", long_probe)
    _kill_tree(victim.pid)
    killed = time.monotonic()
    procs.append(_worker(redis_url, queue, f"selftest-{tag}-survivor"))
    back = None
    while time.monotonic() - killed < RECOVERY_BOUND + timeout:
        status = rqsafe.statuses(conn, [job_id])[0]
        # Back in its queue: no longer the killed worker's (started, on attempt 1) job.
        if back is None and (status != "started" or Attempts(conn).get(job_id) > 1):
            back = time.monotonic() - killed
        if status in ("finished", "failed"):
            break
        time.sleep(0.2)
    checks = [
        Check(
            f"chaos: a SIGKILLed worker's scan is back in its queue within {RECOVERY_BOUND} s",
            back is not None and back <= RECOVERY_BOUND,
            f"after {back:.1f} s (heartbeat TTL {DEFAULT_BEAT_TTL} s + grace "
            f"{DEFAULT_ABANDON_GRACE} s)"
            if back is not None
            else "it never came back: is a mirror running?",
        )
    ]
    outcome = outcomes.outcomes(conn, pushed)[0]
    checks.append(
        Check(
            "chaos: it then finished once, with the right count",
            outcome["status"] == "finished" and outcome["counts"].get("ERROR") == 1,
            f"{outcome['status']}, counts {outcome['counts']}, {outcome['error'] or 'no error'}",
        )
    )
    if database_reader is not None:
        row = _row_when(
            database_reader, long_probe, lambda r: r["status"] in ("finished", "failed"), 15
        )
        checks.append(
            Check(
                "chaos: the database row says so",
                bool(row)
                and row["status"] == "finished"
                and row["attempts"] == 2
                and row["counts"] == {"ERROR": 1},
                f"{row['status']}, attempts {row['attempts']}, counts {row['counts']}"
                if row
                else "no row",
            )
        )
    return checks


def _check_rows(database_reader, paths, timeout):
    rows = {
        p: _row_when(database_reader, p, lambda r: r["status"] == "finished", timeout)
        for p in paths
    }
    missing = [p for p, r in rows.items() if not r]
    return Check(
        "the mirror wrote the probes' rows",
        not missing,
        f"{len(rows)} rows"
        if not missing
        else f"no finished row for {missing[0]} after {timeout} s (is LOGJOBS_DB the mirror's "
        f"database?)",
    )


def _row_when(database_reader, path, condition, timeout):
    deadline = time.monotonic() + timeout
    while True:
        row = database_reader(path)
        if row and condition(row) or time.monotonic() > deadline:
            return row
        time.sleep(0.5)


def _mirror_alive(conn, wait=LOCK_TIMEOUT):
    """The host of a mirror that finished a cycle lately (it marks each one), or None."""
    deadline = time.monotonic() + wait
    while (host := MirrorPresence.alive(conn)) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    return host


def _worker(redis_url, queue, name, *options):
    return subprocess.Popen(
        queues.rq_command("worker", "--name", name, *options, queue),
        env=dict(
            environ_with_worker_classes(), RQ_REDIS_URL=redis_url
        ),  # not on the command line: `ps` shows it
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=killed_with_parent,  # a selftest killed outright leaves no worker behind
    )


def _kill_tree(pid):
    """SIGKILL a worker and its work-horse (which RQ puts in a process group of its own)."""
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children += [int(c) for c in f.read().split()]
    for p in [pid, *children]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
