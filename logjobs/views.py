"""The read side: plain dicts from the status database (and live RQ facts) for the CLI and web pages."""

from peewee import fn
from rq import Queue, Worker

from .defaults import QUEUES, STATES
from .models import History, Scan, isoformat


def status():
    """Job counts by state and by queue, and the workers that ran them, from the database."""
    by_state = dict.fromkeys(STATES, 0)
    for state, n in Scan.select(Scan.status, fn.COUNT(Scan.id)).group_by(Scan.status).tuples():
        by_state[state] = n
    by_queue = dict.fromkeys(QUEUES, 0)
    for queue, n in Scan.select(Scan.queue, fn.COUNT(Scan.id)).group_by(Scan.queue).tuples():
        by_queue[queue] = n
    workers = [w for (w,) in Scan.select(Scan.worker).where(Scan.worker.is_null(False)).distinct().tuples()]
    return {"jobs": by_state, "queues": by_queue, "workers": sorted(workers), "total": sum(by_state.values())}


def live(conn):
    """What Redis says right now: jobs waiting per queue, and the workers alive."""
    waiting = {name: Queue(name, connection=conn).count for name in QUEUES}
    workers = [
        {"name": w.name, "state": w.get_state(), "queues": w.queue_names(), "job_id": w.get_current_job_id()}
        for w in Worker.all(connection=conn)
    ]
    return {"waiting": waiting, "workers_alive": sorted(workers, key=lambda w: w["name"])}


def report(failed_only=False):
    """One dict per pushed file, in path order."""
    query = Scan.select().order_by(Scan.path)
    if failed_only:
        query = query.where(Scan.status == "failed")
    return [row.to_dict() for row in query]


def show(key):
    """One file's row and its job's history, found by path or job id; None if unknown."""
    row = Scan.get_or_none((Scan.path == key) | (Scan.job_id == key))
    if row is None:
        return None
    return dict(row.to_dict(), history=history(row.path))


def history(path):
    """Every state change of every scan of one file, oldest first."""
    query = History.select().where(History.path == path).order_by(History.at, History.id)
    return [
        {"job_id": h.job_id, "part": h.part, "state": h.state, "attempt": h.attempt, "worker": h.worker,
         "error": h.error, "at": isoformat(h.at)}
        for h in query
    ]
