"""What became of pushed files, straight from Redis: waiting for their jobs (`push --wait`), their
outcomes, and the reason RQ recorded for a failed job."""

import logging
import re
import signal
import time

import redis

from . import scanner, wire
from .defaults import FAILED
from .exceptions import LogJobsError
from .jobs import ScanFailed
from .push import each_once
from .rqsafe import ENDED, WORKER_ENV, Job, refused_by_plain_worker, statuses
from .store import DoneFiles

log = logging.getLogger(__name__)


def failure_reason(job):
    """The one-line reason RQ recorded for a failed job: the last line of its traceback."""
    result = job.latest_result()
    text = (result.exc_string or "") if result is not None else ""
    if refused_by_plain_worker(text):
        return PLAIN_WORKER
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines or lines[-1].startswith(_HORSE_DIED):
        # No code of ours ran to the end: the attempt's work-horse died, killed outright (RQ says so
        # in words of its own, or none).
        number = re.search(r"signal (\d+)", lines[-1]) if lines else None
        reason = (
            "the work-horse died (killed by "
            f"{_signal_name(int(number[1])) if number else 'a signal'}, as by the OOM killer)"
        )
        if job.get_status(refresh=False) == FAILED:
            reason += "; no retries left (does this file kill its workers?)"
        return reason
    # "logjobs.jobs.ScanFailed: /x: read error: ..." reads better without the class path.
    return lines[-1].removeprefix(f"{ScanFailed.__module__}.{ScanFailed.__name__}: ")


_HORSE_DIED = "Work-horse terminated unexpectedly"  # RQ's words, when it saw the horse die
PLAIN_WORKER = (
    "a worker without logjobs' classes took the job, and could not read it: start workers with "
    + " ".join(f"{k}={v}" for k, v in WORKER_ENV.items())
    + " (see conf/systemd/logjobs-worker@.service)"
)


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


#: Seconds `wait` rides out Redis being away (restarting, failing over) before it gives up.
OUTAGE_PATIENCE = 60


def wait(conn, pushed, progress=None, poll=0.5, timeout=None, patience=OUTAGE_PATIENCE):
    """Poll RQ until every pushed job has ended; return each file's outcome (see `outcomes`).

    `progress(files_done)` is called after each poll; LogJobsError after `timeout` seconds. Redis
    may be away for `patience` seconds at a time (a restart: the jobs go on), then its error is
    raised.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    files = pushed.awaited
    pending = each_once(files)
    ended = set()
    outage = None
    while True:
        try:
            ended.update(
                j for j, status in zip(pending, statuses(conn, pending)) if status in ENDED
            )
            pending = [j for j in pending if j not in ended]
            if progress is not None:
                progress(sum(all(j in ended for j in ids) for ids in files.values()))
            if not pending:
                return outcomes(conn, pushed)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if outage is None:
                outage = time.monotonic()
                log.warning(
                    "lost Redis (%s); still waiting for the jobs, for up to %d s", exc, patience
                )
            elif time.monotonic() - outage > patience:
                raise
        else:
            outage = None
        if deadline is not None and time.monotonic() > deadline:
            raise LogJobsError(f"{len(pending)} job(s) still running after {timeout} s")
        time.sleep(poll)


def outcomes(conn, pushed):
    """Each pushed file's status, counts and failure reason, straight from Redis (for `push
    --wait`).

    A file skipped as in flight gets its earlier push's outcome, with `skipped` and without counts:
    its scan may continue one before it, whose counts this push does not know (`report` has them
    all)."""
    files = pushed.awaited
    job_ids = each_once(files)
    jobs = dict(zip(job_ids, Job.fetch_many(job_ids, connection=conn)))
    records = iter(
        DoneFiles(conn).get([(job_id, path) for path, ids in files.items() for job_id in ids])
    )
    result = []
    for path, ids in files.items():
        parts = [(job_id, next(records)) for job_id in ids]
        if path in pushed.decisions and not pushed.decisions[path].scan:
            parts = []  # only renamed: its counts are the record's
        errors = [
            # a job's reason names the (first) file it failed on: not again beside this one
            rec.error
            if rec
            else _job_failure(jobs[job_id]).removeprefix(scanner.printable(path) + ": ")
            for job_id, rec in parts
            if not rec or rec.error is not None
        ]
        if path in pushed.skipped:
            result.append(
                {
                    "path": path,
                    "job_id": ids[0],
                    "status": "failed" if errors else "finished",
                    "counts": None,
                    "error": errors[0] if errors else None,
                    "skipped": True,
                }
            )
        elif errors:
            result.append(
                {
                    "path": path,
                    "job_id": ids[0],
                    "status": "failed",
                    "counts": {},
                    "error": errors[0],
                }
            )
        else:
            results = [scanner.ScanResult.from_dict(wire.plain(rec.result)) for _, rec in parts]
            decision = pushed.decisions.get(path)
            if decision is not None and decision.record is not None:
                results.insert(0, _base(decision))  # a scan continuing an earlier one adds to it
            merged = scanner.merge(results)
            result.append(
                {
                    "path": path,
                    "job_id": ids[0],
                    "status": "finished",
                    "counts": merged.counts,
                    "error": None,
                }
            )
    return result


def _base(decision):
    """The counts a continuing scan adds to: its record's, less its last line when the scan reads
    that line again (it had no newline: see scanner.ScanResult.partial)."""
    record = decision.record
    if decision.since >= record.end:
        return scanner.ScanResult(dict(record.counts), record.lines, record.end)
    return scanner.ScanResult(
        {p: n - record.partial_counts.get(p, 0) for p, n in record.counts.items()},
        None if record.lines is None else record.lines - 1,
        decision.since,
    )


def _job_failure(job):
    return "the job vanished from Redis" if job is None else failure_reason(job)
