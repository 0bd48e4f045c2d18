"""Enqueueing scans: expanding paths, skipping files already in flight, one transaction per batch."""

import dataclasses
import glob
import hashlib
import os
import secrets

from rq import Queue, Retry
from rq.job import Job

from . import events
from .defaults import (
    DEFAULT_FAILURE_TTL, DEFAULT_PUSH_BATCH, DEFAULT_QUEUE, DEFAULT_RESULT_TTL, FILES_KEY, JOB_ID_PREFIX,
    QUEUED, QUEUES,
)
from .exceptions import PushRefused, ScanError

#: RQ statuses of a job that will still run: a file whose job is in one is not pushed again.
IN_FLIGHT = {"queued", "started", "scheduled", "deferred"}
JOB_FUNC = "logjobs.jobs.scan_file"
STDIN = "-"


def expand(args, roots=(), stdin=None):
    """Absolute paths of the files named by `args` (files, directories, globs, or '-' for stdin).

    Refuses (PushRefused) when an argument names nothing, a directory cannot be read, or a path
    lies outside `roots`; anything else that is wrong with a file is left for its job to report.
    """
    paths = {}
    for arg in args:
        if arg == STDIN:
            if stdin is None:
                raise PushRefused("'-' given, but there is no standard input to read paths from")
            for line in stdin:
                line = line.rstrip("\n")
                if line:
                    _add(paths, _existing(line, arg_kind="path from stdin"))
        elif os.path.lexists(arg):
            _add(paths, arg)
        elif glob.has_magic(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                raise PushRefused(f"no file matches {arg!r}")
            for match in matches:
                _add(paths, match)
        else:
            _existing(arg)
    files = list(paths)
    if roots:
        for path in files:
            _check_root(path, roots)
    return files


def _existing(path, arg_kind="path"):
    if not os.path.lexists(path):
        raise PushRefused(f"no such file or directory: {path} ({arg_kind}); nothing was enqueued")
    return path


def _add(paths, path):
    """Add a file, or every file below a directory (not following symlinked directories)."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        paths[path] = None
        return

    def refuse(err):
        raise PushRefused(f"cannot read directory {err.filename}: {err.strerror}; nothing was enqueued")

    for top, dirs, names in os.walk(path, onerror=refuse):
        dirs.sort()
        for name in sorted(names):
            paths[os.path.join(top, name)] = None
        # os.walk lists symlinks to directories among `dirs` but does not descend into them.
        for name in dirs:
            full = os.path.join(top, name)
            if os.path.islink(full):
                paths[full] = None


def _check_root(path, roots):
    real = os.path.realpath(path)
    for root in roots:
        if _within(path, root) and _within(real, os.path.realpath(root)):
            return
    raise PushRefused(f"{path} is outside the allowed roots ({os.pathsep.join(roots)}); nothing was enqueued")


def _within(path, root):
    return os.path.commonpath([path, root]) == root


def job_id_for(path):
    """A fresh RQ job id for a scan of `path`: greppable by file, never reused (RQ ids do not dedupe)."""
    digest = hashlib.sha1(os.fsencode(path)).hexdigest()[:16]
    return f"{JOB_ID_PREFIX}{digest}-{secrets.token_hex(4)}"


@dataclasses.dataclass
class Pushed:
    """What `push` did: (path, job id) pairs enqueued, and those skipped as already in flight."""

    queue: str
    enqueued: list
    skipped: list


def push(conn, paths, queue=DEFAULT_QUEUE, patterns=("ERROR",), retry_max=3, retry_intervals=(10, 30, 60),
         timeout=3600, batch=DEFAULT_PUSH_BATCH):
    """Enqueue one scan job per path, one Redis transaction per `batch` files."""
    if queue not in QUEUES:
        raise PushRefused(f"unknown queue {queue!r}; choose one of {', '.join(QUEUES)}")
    rq_queue = Queue(queue, connection=conn)
    retry = Retry(max=retry_max, interval=list(retry_intervals) or 0) if retry_max else None
    done = Pushed(queue, [], [])
    for start in range(0, len(paths), batch):
        chunk = paths[start:start + batch]
        in_flight = _in_flight(conn, chunk)
        todo = [p for p in chunk if p not in in_flight]
        done.skipped += [(p, in_flight[p]) for p in chunk if p in in_flight]
        if not todo:
            continue
        ids = [job_id_for(p) for p in todo]
        datas = [
            Queue.prepare_data(
                JOB_FUNC, args=(path, list(patterns)), job_id=job_id, timeout=timeout, retry=retry,
                result_ttl=DEFAULT_RESULT_TTL, failure_ttl=DEFAULT_FAILURE_TTL, description=f"scan {path}",
            )
            for path, job_id in zip(todo, ids)
        ]
        with conn.pipeline(transaction=True) as pipe:
            rq_queue.enqueue_many(datas, pipeline=pipe)
            pipe.hset(FILES_KEY, mapping=dict(zip(todo, ids)))
            for path, job_id in zip(todo, ids):
                events.emit(pipe, events.Event(job_id, QUEUED, path=path, queue=queue, patterns=list(patterns)))
            pipe.execute()
        done.enqueued += list(zip(todo, ids))
    return done


def _in_flight(conn, paths):
    """{path: job id} for the paths whose latest job will still run."""
    ids = conn.hmget(FILES_KEY, paths)
    known = [(p, i.decode()) for p, i in zip(paths, ids) if i]
    if not known:
        return {}
    states = statuses(conn, [job_id for _, job_id in known])
    return {p: i for (p, i), state in zip(known, states) if state in IN_FLIGHT}


def statuses(conn, job_ids):
    """RQ's status of each job id, or None for a job Redis no longer has, in one round trip."""
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(Job.key_for(job_id), "status")
        return [s.decode() if s else None for s in pipe.execute()]


def failure_reason(job):
    """The one-line reason RQ recorded for a failed job: the last line of its traceback."""
    result = job.latest_result()
    text = (result.exc_string or "") if result is not None else ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "the work-horse died (killed by a signal, e.g. the OOM killer)"
    # "logjobs.exceptions.ScanError: no such file: /x" reads better without the class path.
    return lines[-1].removeprefix(ScanError.__module__ + "." + ScanError.__name__ + ": ")


def outcomes(conn, job_ids):
    """Each job's path, RQ status, counts (when finished) and failure reason, straight from Redis."""
    result = []
    for job_id, job in zip(job_ids, Job.fetch_many(job_ids, connection=conn)):
        if job is None:
            result.append({"path": None, "job_id": job_id, "status": "failed", "counts": {},
                           "error": "the job vanished from Redis"})
            continue
        status = job.get_status(refresh=False)
        status = getattr(status, "value", status)
        finished = status == "finished"
        value = job.return_value() if finished else None
        result.append({"path": job.args[0], "job_id": job_id, "status": status,
                       "counts": (value or {}).get("counts", {}), "error": None if finished else failure_reason(job)})
    return result
