"""The RQ job functions: thin wrappers that run the scanner and report state changes.

Workers import this module by dotted path (`logjobs.jobs.scan_file`); they need no logjobs settings.
A failed scan always raises, so RQ's retry policy applies; a permanent failure first empties the
job's retry budget, so it fails at once instead of burning retries on a file that cannot heal.
"""

import logging
import os
import socket
import threading

import redis
from rq import get_current_job

from . import events, scanner
from .defaults import (
    ATTEMPTS_KEY, BEAT_KEY, DEFAULT_BEAT_INTERVAL, DEFAULT_BEAT_TTL, FAILED, FINISHED, QUEUED,
    SCHEDULED, STARTED,
)
from .exceptions import ScanError

log = logging.getLogger(__name__)


def scan_file(path, patterns, start=0, end=None):
    """Count the lines of `path` (or of its byte range) that contain each of `patterns`."""
    job = get_current_job()
    conn = job.connection
    attempt = conn.hincrby(ATTEMPTS_KEY, job.id, 1)
    worker = os.environ.get("RQ_WORKER_ID") or job.worker_name or socket.gethostname()
    events.emit(conn, events.Event(job.id, STARTED, attempt, worker=worker))
    with Heartbeat(conn, job.id, worker):
        try:
            result = scanner.scan(path, patterns, start, end)
        except Exception as exc:
            if isinstance(exc, ScanError) and exc.permanent:
                job.retries_left = 0
            events.emit(conn, events.Event(job.id, next_state(job), attempt, worker=worker, error=reason(exc)))
            raise
    result = result.to_dict()
    events.emit(conn, events.Event(job.id, FINISHED, attempt, worker=worker, result=result))
    return result


def next_state(job):
    """The state RQ puts a job in after a failed attempt: retried now, retried later, or failed."""
    if not job.retries_left:
        return FAILED
    return SCHEDULED if job.get_retry_interval() else QUEUED


def reason(exc):
    """A one-line reason for a failed attempt."""
    text = str(exc).strip().splitlines()
    detail = text[0] if text else ""
    if isinstance(exc, ScanError):
        return detail
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


class Heartbeat:
    """Refresh a short-lived key while a scan runs, so the keeper sees a dead host within seconds.

    RQ's own heartbeat comes from the worker's parent process every 30 s and only expires 60 s
    later; this one comes from the work-horse itself, every DEFAULT_BEAT_INTERVAL seconds.
    """

    def __init__(self, conn, job_id, worker, interval=DEFAULT_BEAT_INTERVAL, ttl=DEFAULT_BEAT_TTL):
        self.conn, self.key, self.worker = conn, BEAT_KEY + job_id, worker
        self.interval, self.ttl = interval, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="logjobs-heartbeat", daemon=True)

    def __enter__(self):
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
        try:
            self.conn.delete(self.key)
        except redis.RedisError:
            pass  # it expires by itself

    def _beat(self):
        self.conn.set(self.key, self.worker, ex=self.ttl)

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                self._beat()
            except redis.RedisError as exc:
                # Cut off from Redis: keep scanning; the keeper may hand the job to another worker,
                # and the mirror will ignore whichever result turns out to be stale.
                log.warning("heartbeat for %s failed: %s", self.key, exc)
