"""`push`: decide what each file needs scanned (tracking), plan the jobs (plans), and enqueue each
batch of files in one Redis transaction, exactly once: their RQ jobs, their latest jobs, and the
events that tell the mirror."""

import dataclasses
import secrets

import redis
from rq import Retry

from . import events, plans, tracking, wire
from .defaults import (
    DEFAULT_BATCH_FILES,
    DEFAULT_FAILURE_TTL,
    DEFAULT_JOB_TIMEOUT,
    DEFAULT_PATTERNS,
    DEFAULT_PUSH_BATCH,
    DEFAULT_QUEUE,
    DEFAULT_RESULT_TTL,
    DEFAULT_RETRY_INTERVALS,
    DEFAULT_RETRY_MAX,
    JOB_ID_PREFIX,
    MAX_PARTS,
    QUEUED,
    QUEUES,
)
from .exceptions import PushCut, PushRefused
from .jobs import SCAN
from .queues import split_queue_name
from .rqsafe import IN_FLIGHT, Queue, Worker, statuses
from .store import CanceledFiles, LatestJobs, ScanRecords, once


def new_job_id():
    """A fresh RQ job id: RQ ids never dedupe, so an id is never reused."""
    return JOB_ID_PREFIX + secrets.token_hex(8)


@dataclasses.dataclass
class Pushed:
    """What `push` did: {path: [job id of each part]} enqueued, {path: [job ids]} skipped as in
    flight (by an earlier push), {path: reason} not scanned as unchanged since their last scan, and
    how each enqueued file's scan continues an earlier one ({path: Decision})."""

    files: dict
    skipped: dict
    unchanged: dict = dataclasses.field(default_factory=dict)
    decisions: dict = dataclasses.field(default_factory=dict)

    @property
    def job_ids(self):
        """The jobs enqueued, each once (not the finished one a file only renamed stands on)."""
        return each_once(
            {
                p: ids
                for p, ids in self.files.items()
                if p not in self.decisions or self.decisions[p].scan
            }
        )

    @property
    def awaited(self):
        """{path: [job ids]} of every file `push --wait` waits for: those enqueued, and those
        skipped as in flight (their scan, by an earlier push, is not over yet)."""
        return {**self.files, **self.skipped}


def each_once(files):
    """The job ids of {path: [job ids]}, each once (files of a batch share a job), in order."""
    return list(dict.fromkeys(j for ids in files.values() for j in ids))


@dataclasses.dataclass(frozen=True)
class _Push:
    """What every batch of one push shares."""

    queue: Queue
    options: wire.ScanOptions
    job_options: dict
    plan_options: dict
    workers: int
    force: bool


def push(
    conn,
    paths,
    queue=DEFAULT_QUEUE,
    patterns=DEFAULT_PATTERNS,
    retry_max=DEFAULT_RETRY_MAX,
    retry_intervals=DEFAULT_RETRY_INTERVALS,
    timeout=DEFAULT_JOB_TIMEOUT,
    batch=DEFAULT_PUSH_BATCH,
    batch_files=DEFAULT_BATCH_FILES,
    any_queue=False,
    force=False,
    analyse=True,
    examples=True,
    ignore_case=False,
    **sizes,
):
    """Enqueue scans of `paths`, skipping files whose scan is still queued or running, and files
    unchanged since their last scan (unless `force`); a grown file is scanned from where its last
    scan ended (see tracking). With `analyse`, scans also find levels, top messages and times (with
    an example line of each message, unless `examples` is off). With `ignore_case`, a line holds a
    pattern whatever the case of its ASCII letters (grep -i).

    Small files share a job; big ones are split into ranges scanned in parallel. One Redis
    transaction carries each `batch` of files: their jobs, and the events that tell the mirror.
    """
    if not any_queue and split_queue_name(queue)[1] is None:
        raise PushRefused(
            f"unknown queue {queue!r}; choose one of {', '.join(QUEUES)}, or NODE.{QUEUES[0]} ..."
        )
    rq_queue = Queue(queue, connection=conn)
    # A part per worker, and small files spread over the workers: more jobs would not run sooner,
    # and each costs a work-horse (a fork and the job's imports: tens of milliseconds).
    workers = max(2, Worker.count(connection=conn, queue=rq_queue))
    sizes.setdefault("max_parts", min(MAX_PARTS, workers))
    # A retried job has waited its turn once already: it goes back to the front of its queue.
    retry = (
        Retry(max=retry_max, interval=list(retry_intervals) or 0, enqueue_at_front=True)
        if retry_max
        else None
    )
    shared = _Push(
        rq_queue,
        wire.ScanOptions(list(patterns), analyse, examples, ignore_case),
        dict(
            timeout=timeout,
            retry=retry,
            result_ttl=DEFAULT_RESULT_TTL,
            failure_ttl=DEFAULT_FAILURE_TTL,
        ),
        dict(sizes, batch_files=batch_files),
        workers,
        force,
    )
    done = Pushed({}, {})
    try:
        for offset in range(0, len(paths), batch):
            _push_batch(conn, paths[offset : offset + batch], shared, done)
    except redis.RedisError as exc:
        if not done.files:
            raise
        raise PushCut(len(done.files), len(paths), exc) from exc
    return done


def _push_batch(conn, chunk, shared, done):
    """Push one batch of files, in one transaction; what it did goes into `done`."""
    latest = LatestJobs(conn).get(chunk)
    in_flight = _in_flight(conn, chunk, latest)
    done.skipped.update(in_flight)
    todo = [p for p in chunk if p not in in_flight]
    if not todo:
        return
    idents, decisions = _decide(conn, todo, shared.options, shared.force, latest)
    done.unchanged.update(
        {p: d.reason for p, d in decisions.items() if d.action == tracking.UNCHANGED}
    )
    todo = _handing_on_first(
        [p for p in todo if decisions[p].action != tracking.UNCHANGED], decisions
    )
    if not todo:
        return
    scanning = [p for p in todo if decisions[p].scan]
    batch_files = min(shared.plan_options["batch_files"], -(-len(scanning) // shared.workers) or 1)
    datas, pushes, files = _jobs(
        scanning, decisions, idents, shared, dict(shared.plan_options, batch_files=batch_files)
    )
    ordered = []
    for path in todo:
        ordered += _push_events(path, pushes.get(path, []), decisions[path], idents[path], shared)
        done.decisions[path] = decisions[path]
        if not decisions[path].scan:
            files[path] = [decisions[path].base]
    handed = {
        p: (decisions[p].moved_from, tracking.record_of(idents[p], **_scan_of(decisions[p].record)))
        for p in todo
        if decisions[p].moved_from
    }
    once(conn, lambda pipe: _queue_batch(pipe, shared.queue, datas, files, ordered, handed))
    done.files.update(files)


def _scan_of(record):
    """The fields of a record that say what its scan counted (not the identity of the file it
    read)."""
    return {
        name: getattr(record, name)
        for name in record.__struct_fields__
        if name not in tracking.IDENTITY_FIELDS
    }


def _jobs(scanning, decisions, idents, shared, plan_options):
    """The jobs that scan the files `scanning` as `decisions` say (see plans.plan): RQ's data for
    each, the push events of each file, and the job ids of each file."""
    datas = []
    pushes = {}
    files = {}
    since = {p: decisions[p].since for p in scanning}
    for job in plans.plan(scanning, since=since, **plan_options):
        job_id = new_job_id()
        if isinstance(job, plans.FilesJob):
            tasks, description = (
                _files_tasks(job, decisions),
                f"scan {job.paths[0]}"
                + (f" and {len(job.paths) - 1} more" if len(job.paths) > 1 else ""),
            )
        else:
            tasks, description = (
                [_part_task(job, decisions[job.path], idents[job.path])],
                (f"scan {job.path} part {job.part + 1}/{job.parts}"),
            )
        for task in tasks:
            files.setdefault(task.path, []).append(job_id)
            parts = (
                job.parts + task.part - job.part
                if isinstance(job, plans.PartJob)
                else task.part + 1
            )
            pushes.setdefault(task.path, []).append(
                events.Event(
                    job_id,
                    task.path,
                    QUEUED,
                    part=task.part,
                    parts=parts,
                    queue=shared.queue.name,
                    patterns=shared.options.patterns,
                    ignore_case=shared.options.ignore_case,
                )
            )
        args = [wire.plain(tasks), wire.plain(shared.options)]
        datas.append(
            Queue.prepare_data(
                SCAN, args=args, job_id=job_id, description=description, **shared.job_options
            )
        )
    return datas, pushes, files


def _files_tasks(job, decisions):
    """The tasks of a batch of small files: whole, or (continuing an earlier scan) from where it
    ended, as part 1 (part 0 of a continued scan is the scan it continues)."""
    return [
        wire.Task(p, decisions[p].since, part=1, resume=decisions[p].resume)
        if decisions[p].base
        else wire.Task(p)
        for p in job.paths
    ]


def _part_task(job, decision, ident):
    """The task of one byte range of a big file, numbered after the scan it continues, if any."""
    first = int(decision.base is not None)
    if first and job.part == 0:
        resume = decision.resume
    elif job.parts > 1 and ident is not None:
        # The parts may run long apart (a backlog): each checks it reads the file pushed, not one
        # rotated in under its name meanwhile, so they all count one file.
        resume = wire.Resume(job.start, ident.head_len, ident.head)
    else:
        resume = None
    return wire.Task(job.path, job.start, job.end, job.part + first, resume)


def _handing_on_first(paths, decisions):
    """The paths in the order their events must reach the mirror: a file renamed away hands its
    record over before its old name starts over. So moves come first, and a move before the move of
    the name it comes from: in a rotation (app.log.1 -> app.log.2, app.log -> app.log.1), app.log.2
    takes app.log.1's counts before app.log.1 takes app.log's."""

    def chain(path):
        """How many moves in a row end at `path` (app.log.2: 2; app.log.1: 1; app.log: 0)."""
        moves, seen = 0, set()
        while path in decisions and decisions[path].moved_from is not None and path not in seen:
            seen.add(path)
            moves += 1
            path = decisions[path].moved_from
        return moves

    return sorted(paths, key=lambda p: (decisions[p].moved_from is None, -chain(p)))


def _queue_batch(pipe, rq_queue, datas, files, events_, handed):
    """A batch of a push, all in one transaction: its jobs, each file's latest jobs, the events, and
    the records `handed` on, {new name: (old name, record)}.

    A moved file takes its record from its old name at once, not only once the mirror has applied
    the move: a push meanwhile (the mirror busy, or down) would take the file for moved again, or
    hand the old name's record to some other file.
    """
    if datas:
        rq_queue.enqueue_many(datas, pipeline=pipe)
    LatestJobs.set(pipe, files)
    events.emit(pipe, *events_)
    if (
        handed
    ):  # a chain's middle name (app.log.1) is both: it gets the record of the name before it
        ScanRecords.write(
            pipe,
            {
                **{old: None for old, _ in handed.values()},
                **{p: record for p, (_, record) in handed.items()},
            },
        )


def _push_events(path, pushes, decision, ident, shared):
    """The events telling the mirror of a file's new scan. A scan continuing an earlier one has that
    one's result as its part 0, so its own parts are numbered from 1."""
    identity = ident.to_dict() if ident else None
    if decision.base is None:
        pushes[0].identity = identity
        return pushes
    first = pushes[0].job_id if pushes else decision.base
    base = events.Event(
        first,
        path,
        QUEUED,
        parts=len(pushes) + 1,
        queue=shared.queue.name,
        patterns=shared.options.patterns,
        ignore_case=shared.options.ignore_case,
        identity=identity,
        base=decision.base,
        since=decision.since,
        moved_from=decision.moved_from,
    )
    return [base, *pushes]


#: Why a file pushed before is scanned whole when no record of a finished scan of it is left.
NO_FINISHED_SCAN = (
    "pushed before, with no finished scan on record (it failed, was canceled or forgotten)"
)


def _decide(conn, paths, options, force, latest):
    """Each path's Identity and tracking.Decision, from the records of earlier scans (few round
    trips); `latest` is each path's latest job ids (see LatestJobs)."""
    idents = {p: tracking.Identity.of(p) for p in paths}
    if force:
        return idents, {p: tracking.Decision(tracking.FULL, "forced") for p in paths}
    records, pending = _records(conn, paths, latest)
    candidates = _candidates(conn, paths, idents, records)
    decisions = {}
    for p in paths:
        if idents[p] is None:
            decisions[p] = tracking.Decision(tracking.FULL, "unreadable")  # its job says why
            continue
        decisions[p] = tracking.decide(
            p,
            idents[p],
            records[p],
            options.patterns,
            candidates.get(p),
            analyse=options.analyse,
            ignore_case=options.ignore_case,
        )
        if p in pending and decisions[p].reason == "new":
            decisions[p].reason = "its latest scan is not in the status database yet"
        elif p in latest and decisions[p].reason == "new":
            decisions[p].reason = NO_FINISHED_SCAN
    return idents, decisions


def _candidates(conn, paths, idents, records):
    """{path: (old name, its record)} for the files unknown under their name that may be known under
    another: the same inode, or the same head. An old name's record is stale, as a name's own is
    (see _records), once the name was pushed again; one being scanned anew has none to hand over."""
    unknown = {
        p: idents[p]
        for p in paths
        if idents[p]
        and not (records[p] and (records[p].dev, records[p].ino) == (idents[p].dev, idents[p].ino))
    }
    named = ScanRecords(conn).named(unknown) if unknown else {}
    olds = {p: next((o for o in found if o != p), None) for p, found in named.items()}
    olds = {p: o for p, o in olds.items() if o is not None}
    if not olds:
        return {}
    names = sorted(set(olds.values()))
    old_records, _ = _records(conn, names, LatestJobs(conn).get(names))
    busy = _in_flight(conn, names)
    return _one_heir(
        {p: (o, old_records[o]) for p, o in olds.items() if old_records[o] and o not in busy},
        idents,
    )


def _one_heir(candidates, idents):
    """The candidates {path: (old name, its record)}, but one path per old name: the one with the
    old file's inode (it was renamed), or none. Copies alike in their first KiB (two logs with one
    banner, compressed in the same run) cannot be told apart: given one record, one got the other's
    counts."""
    claims = {}
    for path, (old, _) in candidates.items():
        claims.setdefault(old, []).append(path)
    kept = {}
    for paths in claims.values():
        if len(paths) > 1:
            paths = [
                p
                for p in paths
                if (candidates[p][1].dev, candidates[p][1].ino) == (idents[p].dev, idents[p].ino)
            ][:1]
        kept.update((p, candidates[p]) for p in paths)
    return kept


def _records(conn, paths, latest):
    """The record of each path's last finished scan, and the paths pushed again since it (`latest`:
    their latest job ids): their record is stale until the mirror has the newer scan (continuing it
    would be refused), so they have none."""
    records, pending = ScanRecords(conn).get(paths), set()
    for p, record in records.items():
        job_ids = latest.get(p)
        if record is not None and job_ids and job_ids[0] != record.job_id:
            records[p] = None
            pending.add(p)
    return records, pending


def _in_flight(conn, paths, latest=None):
    """{path: [job ids]} for the paths whose latest scan (from LatestJobs, read if not given) has a
    job that will still run."""
    known = (LatestJobs(conn).get(paths) if latest is None else latest).items()
    ids = [job_id for _, job_ids in known for job_id in job_ids]
    running = {job_id for job_id, state in zip(ids, statuses(conn, ids)) if state in IN_FLIGHT}
    pairs = [(job_id, p) for p, job_ids in known for job_id in running.intersection(job_ids)]
    # A file `cancel` took back from a job that scans on (a batch) is no longer in flight.
    taken_back = {pair for pair, no in zip(pairs, CanceledFiles(conn).has(pairs)) if no}
    return {
        p: job_ids
        for p, job_ids in known
        if any((job_id, p) not in taken_back for job_id in running.intersection(job_ids))
    }
