"""Recovery with plain `rq worker`s: a work-horse or a whole worker SIGKILLed mid-scan loses
nothing."""

import os
import signal
import time
from datetime import datetime, timedelta

import fakeredis
import psutil
from rq.scheduler import RQScheduler

from logjobs.defaults import ATTEMPTS_KEY
from logjobs.keeper import Keeper
from logjobs.rqsafe import Queue

HUGE = 64 << 30  # a sparse file this big takes seconds to scan: time enough to kill its scanner


def huge_file(path):
    with open(path, "wb") as f:
        f.truncate(HUGE)
    return str(path)


def heal(path):
    """Replace the huge file by a small one, so the next attempt finishes at once."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write("ERROR 1\nERROR 2\nok\n")
    os.replace(tmp, path)


def horse_of(worker):
    """The work-horse RQ forked for the job a worker is running."""
    children = psutil.Process(worker.pid).children()
    return children[0] if children else None


def seconds(iso):
    return datetime.fromisoformat(iso.rstrip("Z") + "+00:00").timestamp()


def started(cluster, path):
    return cluster.report().get(path, {}).get("status") == "started"


def test_a_mirror_restarted_after_a_sigkill_enqueues_due_retries_at_once(cluster, conn):
    # The dead mirror's locks on RQ's scheduler outlive it by 60 s: a keeper of another name waited
    # as long.
    first = cluster.mirror()
    lock = RQScheduler.get_locking_key("default")
    cluster.wait_for(lambda: conn.exists(lock), what="the mirror's scheduler locks")
    cluster.kill_tree(first)
    cluster.mirror()
    queue = Queue("default", connection=conn)
    job = queue.enqueue_in(timedelta(seconds=1), "os.getpid")  # as a retry waits its interval
    cluster.wait_for(
        lambda: job.id in queue.job_ids, timeout=20, what="the due job back in its queue"
    )


def scanning(cluster, tmp_path, *push_options):
    """A huge file pushed to a worker, its scan started: (its path, the worker, its work-horse)."""
    path = huge_file(tmp_path / "big.log")
    worker = cluster.worker()
    cluster.mirror()
    cluster.run("push", "--split-size", "0", *push_options, path, check=True)
    cluster.wait_for(lambda: started(cluster, path), what="the scan to start")
    return path, worker, cluster.wait_for(lambda: horse_of(worker), what="the work-horse")


def test_horse_killed_mid_scan_is_retried_and_counted_once(cluster, tmp_path):
    path, worker, horse = scanning(cluster, tmp_path, "--retry-intervals", "1")
    heal(path)
    horse.kill()  # as the OOM killer would
    row = cluster.wait_for(
        lambda: (r := cluster.report()[path])["status"] == "finished" and r,
        timeout=60,
        what="the retry to finish",
    )
    assert row["attempts"] == 2 and row["counts"] == {"ERROR": 2}
    assert worker.poll() is None, "the worker itself survives its horse"


def test_a_horse_killed_on_its_last_attempt_fails_the_file_saying_so(cluster, tmp_path):
    path, _, horse = scanning(cluster, tmp_path, "--retries", "0")
    horse.kill()
    row = cluster.wait_for(
        lambda: (r := cluster.report()[path])["status"] == "failed" and r, what="the failure"
    )
    # Not RQ's "Work-horse terminated unexpectedly; waitpid returned 9 (signal 9);"
    assert (
        row["error"]
        == "the work-horse died (killed by SIGKILL, as by the OOM killer); no retries left "
        "(does this file kill its workers?)"
    )


def test_worker_killed_mid_scan_is_recovered_by_another_within_30s(cluster, tmp_path):
    path = huge_file(tmp_path / "big.log")
    doomed = cluster.worker(name="doomed")
    cluster.mirror()
    job_id = cluster.json("push", "--json", "--split-size", "0", path)["enqueued"][0][
        "job_id"
    ]  # default policy
    cluster.wait_for(lambda: started(cluster, path), what="the scan to start")
    cluster.worker(name="survivor")
    heal(path)
    cluster.kill_tree(doomed)  # the whole host dies: worker and work-horse
    killed_at = time.time()
    row = cluster.wait_for(
        lambda: (r := cluster.report()[path])["status"] == "finished" and r,
        timeout=60,
        what="recovery",
    )
    assert row["attempts"] == 2 and row["counts"] == {"ERROR": 2} and row["worker"] == "survivor"
    history = cluster.history(job_id)
    recovered = [h for h in history if h["error"] and "doomed died or was cut off" in h["error"]]
    assert recovered and recovered[0]["attempt"] == 1
    restarted = next(h for h in history if h["state"] == "started" and h["attempt"] == 2)
    assert seconds(restarted["at"]) - killed_at < 30, (
        "the job must be running again within 30 s of the kill"
    )
    assert [h["state"] for h in history].count("finished") == 1


def test_sigterm_lets_the_worker_finish_its_scan(cluster, tmp_path):
    path = tmp_path / "big.log"
    with open(path, "wb") as f:
        f.truncate(2 << 30)  # a few seconds of scanning (zeros read at ~0.4 GB/s)
    path = str(path)
    worker = cluster.worker()
    cluster.mirror()
    cluster.run("push", "--split-size", "0", path, check=True)
    cluster.wait_for(lambda: started(cluster, path), what="the scan to start")
    worker.send_signal(signal.SIGTERM)  # as systemd's KillMode=mixed does: the worker alone
    assert worker.wait(60) == 0
    row = cluster.report()[path]
    assert (row["status"], row["attempts"], row["counts"]) == ("finished", 1, {"ERROR": 0})


def test_a_file_that_keeps_killing_its_workers_fails_after_its_budget(cluster, tmp_path):
    path = huge_file(tmp_path / "poison.log")
    cluster.mirror()
    cluster.run(
        "push", "--split-size", "0", "--retries", "1", "--retry-intervals", "0", path, check=True
    )
    for attempt in (1, 2):
        worker = cluster.worker(name=f"victim{attempt}")
        cluster.wait_for(
            lambda attempt=attempt: (
                cluster.report().get(path, {}).get("attempts") == attempt and started(cluster, path)
            ),
            timeout=60,
            what=f"attempt {attempt}",
        )
        cluster.kill_tree(worker)
    row = cluster.wait_for(
        lambda: (r := cluster.report()[path])["status"] == "failed" and r,
        timeout=60,
        what="the poison file to fail",
    )
    assert row["attempts"] == 2
    assert "victim2 died or was cut off during attempt 2" in row["error"]
    assert "no retries left" in row["error"]


def test_a_job_popped_by_a_worker_that_died_at_once_is_requeued(cluster, tmp_path, conn):
    # A worker on several queues pops with a plain BLPOP: killed right after, it leaves the job in
    # no queue and no registry. Here the pop is done by hand, as that worker would have.
    path = tmp_path / "a.log"
    path.write_text("ERROR\n")
    cluster.run("push", str(path), check=True)
    assert conn.lpop("rq:queue:default")
    cluster.run("mirror", "--once", check=True)  # first look: suspected
    assert conn.llen("rq:queue:default") == 0
    time.sleep(5)  # the keeper's grace
    cluster.run("mirror", "--once", check=True)  # a look after the grace: requeued
    assert conn.llen("rq:queue:default") == 1
    cluster.worker()
    row = cluster.wait_for(
        lambda: (r := cluster.report()[str(path)])["status"] == "finished" and r, what="the scan"
    )
    assert row["counts"] == {"ERROR": 1} and row["attempts"] == 1


def test_attempt_counts_of_expired_jobs_are_forgotten(cluster, tmp_path, conn):
    # Each run of a job counts its attempt in logjobs:attempts; once RQ drops the job (its result
    # expired: here deleted, as the expiry does), the mirror's sweep drops its count too.
    paths = []
    for name in ("old.log", "new.log"):
        paths.append(str(tmp_path / name))
        (tmp_path / name).write_text("ERROR\n")
    old, new = (cluster.json("push", "--json", p)["enqueued"][0]["job_id"] for p in paths)
    worker = cluster.worker()
    cluster.wait_for(
        lambda: all(cluster.report().get(p, {}).get("status") == "finished" for p in paths),
        what="both scans",
    )
    cluster.kill_tree(worker)
    assert conn.hexists(ATTEMPTS_KEY, old) and conn.hexists(ATTEMPTS_KEY, new)
    conn.delete(f"rq:job:{old}")
    cluster.run("mirror", "--once", check=True)
    assert not conn.hexists(ATTEMPTS_KEY, old)
    assert conn.hget(ATTEMPTS_KEY, new) == b"1"


def test_the_sweep_of_attempt_counts_goes_on_where_it_stopped():
    conn = fakeredis.FakeRedis()
    ids = [f"lj-{i:04}" for i in range(2500)]
    conn.hset(ATTEMPTS_KEY, mapping=dict.fromkeys(ids, 1))
    live = set(ids[::7])
    for job_id in live:
        conn.hset(f"rq:job:{job_id}", "status", "finished")
    keeper, forgotten = Keeper(conn), []
    for _ in range(10):  # 1,000 fields a call: three calls sweep them all
        forgotten += keeper.forget_expired()
    assert sorted(forgotten) == sorted(set(ids) - live)
    assert {f.decode() for f in conn.hkeys(ATTEMPTS_KEY)} == live
