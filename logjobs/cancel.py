"""`logjobs cancel`: take back scans that have not ended, and nothing else.

A target is a path, a glob ('*' spans '/') or a job id. Each file it names is taken back from its
latest scan's jobs: a job waiting in its queue (or for a retry) is canceled in RQ; every job marks
the files taken back (store.CanceledFiles), which a running one reads at each heartbeat: it stops
scanning such a file at once, and skips those it has not got to (a batch of small files scans the
others). No RQ command is sent, so cancel needs no right to publish to workers (see
conf/redis/users.acl). The mirror hears of it by a `canceled` event per part, which ends
only parts that have not ended (rows._newer): a file already finished stays finished, and one that
finishes while it is being canceled is finished. A later push scans the file again as usual.
"""

import contextlib
import dataclasses
import getpass
import glob
import os
import socket

from rq.exceptions import InvalidJobOperation, NoSuchJobError

from . import events
from .defaults import CANCELED, JOB_ID_PREFIX
from .jobs import files_of
from .rqsafe import ENDED, Job, statuses
from .store import Attempts, CanceledFiles, DoneFiles, LatestJobs

_GLOB = frozenset("*?[")


@dataclasses.dataclass
class Canceled:
    """What a cancel did: paths taken back (by how their jobs were), paths whose scan had ended
    already (left as they are), and targets that name nothing pushed."""

    queued: set[str] = dataclasses.field(default_factory=set)  # waiting: not to be scanned
    stopped: set[str] = dataclasses.field(default_factory=set)  # running jobs stop or skip them
    ended: set[str] = dataclasses.field(default_factory=set)  # but for files also taken back
    unknown: list[str] = dataclasses.field(default_factory=list)

    @property
    def files(self) -> set[str]:
        return self.queued | self.stopped

    def to_dict(self):
        """As `cancel --json` prints it."""
        return {
            "canceled": sorted(self.files),
            "queued": sorted(self.queued),
            "stopped": sorted(self.stopped),
            "ended": sorted(self.ended - self.files),
            "unknown": self.unknown,
        }


def who() -> str:
    """Who cancels, as a row records it: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a uid without a name (a container)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def cancel(conn, targets, by) -> Canceled:
    """Take back the scans `targets` name (see the module's docstring); `by` says who, for the
    rows."""
    done = Canceled()
    wanted: dict[str, set[str]] = {}  # job id -> the paths of it to take back
    for target in targets:
        found = _jobs_of(conn, target)
        if not found:
            done.unknown.append(target)
        for job_id, paths in found.items():
            wanted.setdefault(job_id, set()).update(paths)
    ids = list(wanted)
    for job_id, status in zip(ids, statuses(conn, ids)):
        _take_back(conn, job_id, status, wanted[job_id], by, done)
    return done


def target_glob(target) -> str:
    """The glob of the files a target names: a path is made absolute, a directory (here, or named
    with a final '/') stands for every file below it, and a plain path matches itself."""
    path = os.path.abspath(target)
    if not _GLOB.intersection(target) and (target.endswith("/") or os.path.isdir(path)):
        return glob.escape(path.rstrip("/")) + "/*"
    return path


def _jobs_of(conn, target) -> dict:
    """{job id: paths} of the latest scans `target` names."""
    if target.startswith(JOB_ID_PREFIX) and "/" not in target:
        try:
            job = Job.fetch(target, connection=conn)
        except NoSuchJobError:
            return {}
        return {target: {path for path, _ in files_of(job)}}
    pattern = target_glob(target)
    latest = (
        LatestJobs(conn).matching(pattern)
        if _GLOB.intersection(pattern)
        else LatestJobs(conn).get([pattern])
    )
    found: dict[str, set[str]] = {}
    for name, job_ids in latest.items():
        for job_id in job_ids:
            found.setdefault(job_id, set()).add(name)
    return found


def _take_back(conn, job_id, status, paths, by, done):
    if status in ENDED:
        done.ended.update(paths)
        return
    try:
        job = Job.fetch(job_id, connection=conn)
    except NoSuchJobError:
        done.ended.update(paths)
        return
    covered = files_of(job)
    ended = DoneFiles(conn).ended(job_id)
    done.ended.update(ended & paths)
    left = [(path, part) for path, part in covered if path in paths and path not in ended]
    if not left:
        return
    # Files of the job left to scan: not ended, not taken back now, nor by an earlier cancel.
    others = {path for path, _ in covered} - ended - paths - CanceledFiles(conn).get(job_id)
    attempt = Attempts(conn).get(job_id)
    with conn.pipeline(transaction=True) as pipe:
        # First: should the job start (or go on) meanwhile, it skips them.
        CanceledFiles.add(pipe, job_id, [path for path, _ in left])
        events.emit(
            pipe,
            *(
                events.Event(job_id, path, CANCELED, attempt, part, error=f"canceled by {by}")
                for path, part in left
            ),
        )
        pipe.execute()
    running = job.get_status(refresh=True) == "started"
    if not others and not running:  # nothing of it is left to run
        with contextlib.suppress(InvalidJobOperation):  # canceled already
            job.cancel()
    (done.stopped if running else done.queued).update(path for path, _ in left)
