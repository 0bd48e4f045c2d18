"""Whole-system faults with real processes: Redis restarting, a soak of random worker SIGKILLs, a
lost reply."""

import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import threading
import time
from datetime import UTC, datetime

from helpers import BIN, assert_exactly_once, corpus, final_rows

ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "test-artifacts")


def test_redis_restart_mid_run_loses_no_job(cluster, tmp_path, conn):
    expected = corpus(tmp_path / "logs")
    workers = [
        cluster.supervised(lambda n=n: cluster.worker(name=f"w{n}-{time.monotonic_ns()}"))
        for n in range(2)
    ]
    cluster.supervised(cluster.mirror)
    cluster.run(
        "push", "--batch-files", "5", "--retry-intervals", "1", str(tmp_path / "logs"), check=True
    )
    cluster.wait_for(lambda: len(final_rows(cluster)) >= 20, what="some scans done")
    # A user waiting on a push of their own: the restart must not end the wait, as it ends no job.
    (tmp_path / "mine").mkdir()
    mine = corpus(tmp_path / "mine" / "logs", small=0, sparse=1)
    waiting = subprocess.Popen(
        [os.path.join(BIN, "logjobs"), "push", "--wait", *mine],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cluster.wait_for(lambda: conn.hexists("logjobs:files", *mine), what="the waited push enqueued")
    cluster.server.stop()  # SIGTERM: Redis writes its append-only file and exits
    time.sleep(3)
    cluster.server.start()
    cluster.wait_for(
        lambda: len(final_rows(cluster)) == len(expected) + 1,
        timeout=180,
        interval=1,
        what="every file to end after the restart",
    )
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, (out, err)
    assert "lost Redis" in err and "still waiting for the jobs" in err
    expected.update(mine)
    assert_exactly_once(cluster, expected, conn)
    assert all(w.restarts <= 3 for w in workers), [w.restarts for w in workers]  # no crash loop


def test_soak_random_worker_kills(cluster, tmp_path, conn):
    """500+ jobs, three workers, one SIGKILLed (with its work-horse) every few seconds and
    replaced."""
    expected = corpus(tmp_path / "logs", small=500, sparse=60, sparse_bytes=512 << 20)
    workers = {f"soak{n}": cluster.worker(name=f"soak{n}") for n in range(3)}
    cluster.mirror()
    pushed = cluster.json(
        "push",
        "--json",
        "--batch-files",
        "1",
        "--retries",
        "10",
        "--retry-intervals",
        "0",
        str(tmp_path / "logs"),
    )
    assert len(pushed["enqueued"]) == len(expected)
    rng, kills, serial = random.Random(42), [], 3
    deadline = time.monotonic() + 200
    while len(final_rows(cluster)) < len(expected) and time.monotonic() < deadline:
        time.sleep(rng.uniform(1.5, 3))
        if len(kills) < 12:
            name = rng.choice(sorted(workers))
            cluster.kill_tree(workers.pop(name))
            kills.append((name, time.time()))
            workers[f"soak{serial}"] = cluster.worker(name=f"soak{serial}")
            serial += 1
    rows, finals = assert_exactly_once(cluster, expected, conn)
    duplicates = [f for f in finals if f[2] != 1]
    requeued, restarted = _recoveries(cluster, kills)
    with sqlite3.connect(cluster.db) as c:
        jobs = c.execute("select count(distinct job_id) from history").fetchone()[0]
    summary = {
        "files": len(expected),
        "jobs": jobs,
        "kills": len(kills),
        "recovered_jobs": len(requeued),
        "requeued_s_median": round(statistics.median(requeued), 1) if requeued else None,
        "requeued_s_worst": round(max(requeued), 1) if requeued else None,
        "restarted_s_median": round(statistics.median(restarted), 1) if restarted else None,
        "restarted_s_worst": round(max(restarted), 1) if restarted else None,
        "files_finished_more_than_once": len(duplicates),
        "rows_not_finished": sum(r["status"] != "finished" for r in rows.values()),
    }
    os.makedirs(ARTIFACTS, exist_ok=True)
    with open(os.path.join(ARTIFACTS, "soak.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print("soak:", summary)
    assert summary["rows_not_finished"] == 0 and not duplicates
    assert len(kills) >= 8
    assert requeued and max(requeued) < 30  # the promise: back in its queue within 30 s


def _recoveries(cluster, kills):
    """Seconds from each kill to the keeper requeueing a job the killed worker held, and to its
    restart."""
    killed_at = dict(kills)
    requeued, restarted = [], []
    with sqlite3.connect(cluster.db) as c:
        lost = c.execute(
            "select job_id, attempt, worker, min(at) from history "
            "where error like '%died or was cut off%' group by job_id, attempt, worker"
        )
        for job_id, attempt, worker, at in lost.fetchall():
            if worker not in killed_at:
                continue
            requeued.append(_seconds(at) - killed_at[worker])
            again = c.execute(
                "select min(at) from history where job_id = ? and state = 'started' "
                "and attempt > ?",
                (job_id, attempt),
            ).fetchone()[0]
            if again:
                restarted.append(_seconds(again) - killed_at[worker])
    return requeued, restarted


def _seconds(value):
    """A history timestamp (naive UTC, as SQLite returns it) as seconds since the epoch."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


class ReplyLosingProxy(threading.Thread):
    """A TCP proxy to Redis that, once, passes a client's EXEC on and then cuts the connection
    before the reply comes back: the transaction ran, and the client cannot know it."""

    def __init__(self, target_port):
        super().__init__(daemon=True)
        self.target_port, self.cut, self.cutting = target_port, threading.Event(), False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]

    def run(self):
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src, dst, from_client):
        try:
            while data := src.recv(65536):
                if not from_client and self.cutting:
                    return  # the reply to EXEC: lost
                cut = from_client and b"EXEC\r\n" in data and not self.cut.is_set()
                self.cutting = self.cutting or cut
                dst.sendall(data)
                if cut:
                    time.sleep(0.5)  # the server runs it, and replies to no one
                    for s in (src, dst):
                        s.shutdown(socket.SHUT_RDWR)
                    self.cutting = False
                    self.cut.set()
                    return
        except OSError:
            pass


def test_a_push_whose_reply_is_lost_enqueues_its_jobs_once(cluster, conn, tmp_path):
    """redis-py sends a MULTI/EXEC again when its reply is lost: every job of the batch went in
    twice."""
    for i in range(3):
        (tmp_path / f"{i}.log").write_text("ERROR\n" * i)
    proxy = ReplyLosingProxy(cluster.server.port)
    proxy.start()
    doc = cluster.json(
        "--redis-url",
        f"redis://127.0.0.1:{proxy.port}/0",
        "push",
        "--json",
        "--batch-files",
        "1",
        *(str(tmp_path / f"{i}.log") for i in range(3)),
    )
    assert proxy.cut.is_set()  # the transaction's reply was lost
    queued = [j.decode() for j in conn.lrange("rq:queue:default", 0, -1)]
    assert sorted(queued) == sorted(e["job_id"] for e in doc["enqueued"])  # each once
    cluster.worker()
    rows = cluster.wait_for(
        lambda: len(final_rows(cluster)) == 3 and final_rows(cluster), what="three rows"
    )
    assert {r["counts"]["ERROR"]: r["attempts"] for r in rows.values()} == {0: 1, 1: 1, 2: 1}
