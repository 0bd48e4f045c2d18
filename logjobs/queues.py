"""Enqueueing scans: expanding paths, skipping files already in flight, one transaction per batch."""

import dataclasses
import errno
import glob
import logging
import os
import re
import secrets
import signal
import stat
import sys
import time

import redis
from rq import Retry

from . import events, fastjson, scanner, tracking, wire
from .access import Roots
from .defaults import (
    DEFAULT_BATCH_BYTES, DEFAULT_BATCH_FILES, DEFAULT_FAILURE_TTL, DEFAULT_JOB_TIMEOUT, DEFAULT_PATTERNS,
    DEFAULT_PUSH_BATCH, DEFAULT_QUEUE, DEFAULT_RESULT_TTL, DEFAULT_RETRY_INTERVALS, DEFAULT_RETRY_MAX,
    DEFAULT_SPLIT_BYTES, DONE_KEY, FAILED, FILES_KEY, HEADS_KEY, INODES_KEY, JOB_ID_PREFIX, MAX_PARTS, PUSHED_KEY,
    QUEUED, QUEUES, SCANNED_KEY,
)
from .exceptions import LogJobsError, PushCut, PushRefused, ScanError
from .jobs import SCAN_FILE, SCAN_FILES, ScanFailed
from .jobs import done_record
from .rqsafe import WORKER_ENV, Job, Queue, Worker, refused_by_plain_worker, warn_once

log = logging.getLogger(__name__)

#: Node queues are named NODE.PRIORITY; node names are plain words.
NODE_SEPARATOR = "."
NODE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # not "-x": `rq worker -x.high` reads an option
#: RQ statuses after which a job will not run again (None: gone from Redis).
ENDED = {"finished", "failed", "stopped", "canceled", None}
#: RQ statuses of a job that will still run: a file whose job is in one is not pushed again.
IN_FLIGHT = {"queued", "started", "scheduled", "deferred"}
STDIN = "-"


def expand(args, roots=(), stdin=None):
    """Absolute paths of the files named by `args` (files, directories, globs, or '-' for stdin), each
    file once: under the first of its names (a link, a hard link, a path through a symlinked folder).

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
    files = _once_each(paths)
    allowed = Roots.of(roots)
    for path in files:
        _check_name(path)
        _check_root(path, allowed)
    return files


def _once_each(paths):
    """The paths, but for later names of a file already listed (its job would count it twice)."""
    seen, kept = set(), []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            kept.append(path)  # its job says what is wrong with it
            continue
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            kept.append(path)
    return kept


def _existing(path, arg_kind="path"):
    if "\0" in path:
        raise PushRefused(f"a {arg_kind} holds a NUL byte, which no file name can: {scanner.printable(path)}; nothing "
                          "was enqueued")
    try:
        os.lstat(path)
    except OSError as e:  # not only ENOENT: a path too long, a folder on it that may not be searched...
        reason = "no such file or directory" if e.errno == errno.ENOENT else (e.strerror or str(e)).lower()
        raise PushRefused(f"{reason}: {scanner.printable(path)} ({arg_kind}); nothing was enqueued") from None
    return path


def _add(paths, path):
    """Add a file, or every file below a directory (not following symlinked directories)."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        paths[path] = None
        return

    def refuse(err):
        raise PushRefused(f"cannot read directory {scanner.printable(err.filename)}: {err.strerror}; nothing was "
                          "enqueued")

    real = os.path.realpath(path)
    for top, dirs, names in os.walk(path, onerror=refuse):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(top, name)
            if not links_within(full, real):
                paths[full] = None
        # os.walk lists symlinks to directories among `dirs` but does not descend into them.
        for name in dirs:
            full = os.path.join(top, name)
            if os.path.islink(full):
                paths[full] = None


def _check_name(path):
    # RQ's workers keep job descriptions and arguments as UTF-8, and so does the status database.
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise PushRefused(f"file name is not valid UTF-8: {repr(os.fsencode(path))[2:-1]}; rename it (nothing was "
                          "enqueued)") from None


def _check_root(path, roots):
    if not roots.allows(os.path.realpath(path)):
        raise PushRefused(f"{scanner.printable(path)} is outside {'the allowed roots' if roots.paths else 'what may be read'}"
                          f" ({roots}); nothing was enqueued")


def links_within(path, root):
    """Is `path` a symlink to a file below `root` (a real path)? A folder's files leave such links out:
    their file is pushed under its own name, and under both its lines would count twice (or, the
    inode seen under a new name, the file would be taken for moved there: `current.log -> app.log`)."""
    return os.path.islink(path) and os.path.isfile(path) and _within(os.path.realpath(path), root)


def _within(path, root):
    return os.path.commonpath([path, root]) == root


def queue_name(priority, node=None):
    """The RQ queue for a priority, on one node's own queues (`web1.high`) or the shared ones (`high`)."""
    if priority not in QUEUES:
        raise PushRefused(f"unknown priority {priority!r}; choose one of {', '.join(QUEUES)}")
    if node is None:
        return priority
    if not NODE_NAME.fullmatch(node):
        raise PushRefused(f"bad node name {node!r}: use letters, digits, '_' and '-' (not first)")
    return f"{node}{NODE_SEPARATOR}{priority}"


def split_queue_name(queue):
    """(node or None, priority) of a queue name; priority None for a queue logjobs did not name."""
    node, _, priority = queue.rpartition(NODE_SEPARATOR)
    return (node or None, priority) if priority in QUEUES else (None, None)


def node_worker_queues(node):
    """The queues a worker on `node` listens to, in priority order: each priority's node queue first."""
    return [q for priority in QUEUES for q in (queue_name(priority, node), priority)]


def rq_command(*args):
    """`rq ARGS...` of the environment logjobs runs in, however it was installed (a venv, --user),
    and wherever PATH points: RQ's CLI run by this Python."""
    return [sys.executable, "-m", "rq.cli", *args]


def new_job_id():
    """A fresh RQ job id: RQ ids never dedupe, so an id is never reused."""
    return JOB_ID_PREFIX + secrets.token_hex(8)


@dataclasses.dataclass
class Pushed:
    """What `push` did: {path: [job id of each part]} enqueued, {path: [job ids]} skipped as in flight
    (by an earlier push), {path: reason} not scanned as unchanged since their last scan, and how each
    enqueued file's scan continues an earlier one ({path: Decision})."""

    files: dict
    skipped: dict
    unchanged: dict = dataclasses.field(default_factory=dict)
    decisions: dict = dataclasses.field(default_factory=dict)

    @property
    def job_ids(self):
        """The jobs enqueued, each once (not the finished one a file only renamed stands on)."""
        return _each_once({p: ids for p, ids in self.files.items()
                           if p not in self.decisions or self.decisions[p].scan})

    @property
    def awaited(self):
        """{path: [job ids]} of every file `push --wait` waits for: those enqueued, and those skipped as
        in flight (their scan, by an earlier push, is not over yet)."""
        return {**self.files, **self.skipped}


def _each_once(files):
    """The job ids of {path: [job ids]}, each once (files of a batch share a job), in order."""
    return list(dict.fromkeys(j for ids in files.values() for j in ids))


def plan(paths, split_bytes=DEFAULT_SPLIT_BYTES, batch_files=DEFAULT_BATCH_FILES, batch_bytes=DEFAULT_BATCH_BYTES,
         max_parts=MAX_PARTS, since=None):
    """Group files into jobs: ("files", [paths]) for batches of small files, ("part", path, start, end,
    part, parts) for each byte range of a big plain file (at most `max_parts`, none under `split_bytes`).

    `since` maps a path to where its scan starts (what was appended to it since its last scan).
    """
    since = since or {}
    jobs, batch, batch_size = [], [], 0
    for path in paths:
        start = since.get(path, 0)
        size = max(0, _regular_size(path) - start)
        if split_bytes and size >= 2 * split_bytes and _splittable(path):
            # A range owns the lines that start in it, so cuts need not fall on line ends: no
            # reading here. The last part reads to the end, as the file is when it runs.
            n = max(2, min(max_parts, size // split_bytes))
            cuts = [start + size * i // n for i in range(n)] + [None]
            jobs += [("part", path, cuts[i], cuts[i + 1], i, n) for i in range(n)]
            continue
        if batch and (len(batch) >= batch_files or batch_size + size > batch_bytes):
            jobs.append(("files", batch))
            batch, batch_size = [], 0
        batch.append(path)
        batch_size += size
    if batch:
        jobs.append(("files", batch))
    return jobs


def _regular_size(path):
    try:
        st = os.stat(path)
    except OSError:
        return 0  # its job reports why
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def _splittable(path):
    try:
        return scanner.compression(path) is None
    except ScanError:
        return False  # scanned whole, its job reports why


def push(conn, paths, queue=DEFAULT_QUEUE, patterns=DEFAULT_PATTERNS, retry_max=DEFAULT_RETRY_MAX,
         retry_intervals=DEFAULT_RETRY_INTERVALS, timeout=DEFAULT_JOB_TIMEOUT, batch=DEFAULT_PUSH_BATCH,
         batch_files=DEFAULT_BATCH_FILES, any_queue=False, force=False, analyse=True, examples=True, **sizes):
    """Enqueue scans of `paths`, skipping files whose scan is still queued or running, and files
    unchanged since their last scan (unless `force`); a grown file is scanned from where its last
    scan ended (see tracking). With `analyse`, scans also find levels, top messages and times (with an
    example line of each message, unless `examples` is off).

    Small files share a job; big ones are split into ranges scanned in parallel. One Redis
    transaction carries each `batch` of files: their jobs, and the events that tell the mirror.
    """
    if not any_queue and split_queue_name(queue)[1] is None:
        raise PushRefused(f"unknown queue {queue!r}; choose one of {', '.join(QUEUES)}, or NODE.{QUEUES[0]} ...")
    rq_queue = Queue(queue, connection=conn)
    # A part per worker, and small files spread over the workers: more jobs would not run sooner, and
    # each costs a work-horse (a fork and the job's imports: tens of milliseconds).
    workers = max(2, Worker.count(connection=conn, queue=rq_queue))
    sizes.setdefault("max_parts", min(MAX_PARTS, workers))
    # A retried job has waited its turn once already: it goes back to the front of its queue.
    retry = Retry(max=retry_max, interval=list(retry_intervals) or 0, enqueue_at_front=True) if retry_max else None
    job_options = dict(timeout=timeout, retry=retry, result_ttl=DEFAULT_RESULT_TTL, failure_ttl=DEFAULT_FAILURE_TTL)
    patterns = list(patterns)
    done = Pushed({}, {})
    try:
        for offset in range(0, len(paths), batch):
            chunk = paths[offset:offset + batch]
            latest = _latest(conn, chunk)
            in_flight = _in_flight(conn, chunk, latest)
            done.skipped.update(in_flight)
            todo = [p for p in chunk if p not in in_flight]
            if not todo:
                continue
            idents, decisions = _decide(conn, todo, patterns, force, analyse, latest)
            done.unchanged.update({p: d.reason for p, d in decisions.items() if d.action == tracking.UNCHANGED})
            todo = _handing_on_first([p for p in todo if decisions[p].action != tracking.UNCHANGED], decisions)
            if not todo:
                continue
            scanning = [p for p in todo if decisions[p].scan]
            datas, pushes, files = _jobs(scanning, decisions, idents, patterns, analyse, examples, queue, job_options,
                                         batch_files=min(batch_files, -(-len(scanning) // workers) or 1), **sizes)
            ordered = []
            for path in todo:
                ordered += _push_events(path, pushes.get(path, []), decisions[path], idents[path], queue, patterns)
                done.decisions[path] = decisions[path]
                if not decisions[path].scan:
                    files[path] = [decisions[path].base]
            handed = {p: (decisions[p].moved_from, {**decisions[p].record, **idents[p].to_dict()})
                      for p in todo if decisions[p].moved_from}
            _once(conn, lambda pipe: _queue_batch(pipe, rq_queue, datas, files, ordered, handed))
            done.files.update(files)
    except redis.RedisError as exc:
        if not done.files:
            raise
        raise PushCut(len(done.files), len(paths), exc) from exc
    return done


def _jobs(scanning, decisions, idents, patterns, analyse, examples, queue, job_options, **plan_options):
    """The jobs that scan the files `scanning` as `decisions` say, planned (see `plan`): RQ's data for
    each, the push events of each file, and the job ids of each file."""
    datas, pushes, files = [], {}, {}
    since = {p: decisions[p].since for p in scanning}
    for job in plan(scanning, since=since, **plan_options):
        job_id = new_job_id()
        if job[0] == "files":
            paths_in_job = job[1]
            starts = {p: _resume(decisions[p]) for p in paths_in_job if decisions[p].base}
            args, description = (paths_in_job, patterns, starts or None, analyse), f"scan {paths_in_job[0]}" + (
                f" and {len(paths_in_job) - 1} more" if len(paths_in_job) > 1 else "")
            func = SCAN_FILES
            for path in paths_in_job:
                files[path] = [job_id]
                first = int(path in starts)  # part 0 of a continued scan is the scan it continues
                pushes[path] = [events.Event(job_id, path, QUEUED, part=first, parts=first + 1, queue=queue,
                                             patterns=patterns)]
        else:
            _, path, start, end, part, parts = job
            first = int(decisions[path].base is not None)
            if first and part == 0:
                resume = _resume(decisions[path])
            elif parts > 1 and idents[path] is not None:
                # The parts may run long apart (a backlog): each checks it reads the file pushed,
                # not one rotated in under its name meanwhile, so they all count one file.
                resume = [start, idents[path].head_len, idents[path].head]
            else:
                resume = None
            args = (path, patterns, start, end, part + first, resume, analyse)
            description = f"scan {path} part {part + 1}/{parts}"
            func = SCAN_FILE
            files.setdefault(path, []).append(job_id)
            pushes.setdefault(path, []).append(events.Event(job_id, path, QUEUED, part=part + first,
                                                            parts=parts + first, queue=queue, patterns=patterns))
        kwargs = {} if examples else {"examples": False}  # the default left out: most jobs' data stay as they were
        datas.append(Queue.prepare_data(func, args=args, kwargs=kwargs, job_id=job_id, description=description,
                                        **job_options))
    return datas, pushes, files


def _handing_on_first(paths, decisions):
    """The paths in the order their events must reach the mirror: a file renamed away hands its record
    over before its old name starts over. So moves come first, and a move before the move of the name
    it comes from: in a rotation (app.log.1 -> app.log.2, app.log -> app.log.1), app.log.2 takes
    app.log.1's counts before app.log.1 takes app.log's."""
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
    """A batch of a push, all in one transaction: its jobs, each file's latest jobs, the events, and the
    records `handed` on, {new name: (old name, record)}.

    A moved file takes its record from its old name at once, not only once the mirror has applied the
    move: a push meanwhile (the mirror busy, or down) would take the file for moved again, or hand the
    old name's record to some other file.
    """
    if datas:
        rq_queue.enqueue_many(datas, pipeline=pipe)
    pipe.hset(FILES_KEY, mapping={os.fsencode(p): " ".join(ids) for p, ids in files.items()})
    events.emit(pipe, *events_)
    if handed:  # a chain's middle name (app.log.1) is both: it gets the record of the name before it
        record_scanned(pipe, {**{old: None for old, _ in handed.values()}, **{p: r for p, (_, r) in handed.items()}})


def record_scanned(pipe, scanned):
    """Record what was counted of each file, {path: record, or None: nothing a push can continue},
    for the pushes to come (see `_records`); written by the mirror, and by a push handing a moved file's
    record on."""
    gone = [os.fsencode(p) for p, record in scanned.items() if record is None]
    if gone:
        pipe.hdel(SCANNED_KEY, *gone)
    records = {p: r for p, r in scanned.items() if r is not None}
    if records:
        pipe.hset(SCANNED_KEY, mapping={os.fsencode(p): fastjson.dumps(r) for p, r in records.items()})
        pipe.hset(INODES_KEY, mapping={tracking.inode_key(r): os.fsencode(p) for p, r in records.items()})
        pipe.hset(HEADS_KEY, mapping={tracking.head_key(r): os.fsencode(p) for p, r in records.items()})


def _once(conn, queue_commands, tries=3):
    """Run the commands `queue_commands(pipe)` queues as one transaction, exactly once.

    redis-py sends a MULTI/EXEC again when its reply is lost (a connection cut, a partition): had
    it run, every job would be enqueued twice. Under WATCH it does not; so the transaction WATCHes a
    marker it sets, and when its reply is lost, the marker says whether it ran.
    """
    marker = PUSHED_KEY + secrets.token_hex(8)
    for attempt in range(tries):
        try:
            with conn.pipeline(transaction=True) as pipe:
                pipe.watch(marker)
                pipe.multi()
                queue_commands(pipe)
                pipe.set(marker, 1, ex=3600)
                pipe.execute()
                return
        except (redis.ConnectionError, redis.TimeoutError, redis.WatchError):
            # Asked on a new connection, with the client's retries (a question may be asked twice).
            if conn.exists(marker):
                return
            if attempt == tries - 1:
                raise


def _resume(decision):
    """What a job continuing a scan checks before it reads: where to start, and the head it expects."""
    record = decision.record
    return [decision.since, record["head_len"], record["head"]]


def _push_events(path, pushes, decision, ident, queue, patterns):
    """The events telling the mirror of a file's new scan. A scan continuing an earlier one has that
    one's result as its part 0, so its own parts are numbered from 1."""
    identity = ident.to_dict() if ident else None
    if decision.base is None:
        pushes[0].identity = identity
        return pushes
    first = pushes[0].job_id if pushes else decision.base
    base = events.Event(first, path, QUEUED, parts=len(pushes) + 1, queue=queue, patterns=patterns,
                        identity=identity, base=decision.base, since=decision.since, moved_from=decision.moved_from)
    return [base, *pushes]


def _decide(conn, paths, patterns, force, analyse, latest):
    """Each path's Identity and tracking.Decision, from the records of earlier scans (few round trips);
    `latest` is each path's latest job id (see `_latest`)."""
    idents = {p: tracking.Identity.of(p) for p in paths}
    if force:
        return idents, {p: tracking.Decision(tracking.FULL, "forced") for p in paths}
    records, pending = _records(conn, paths, latest)
    # A file unknown under its name may be one known under another: same inode, or same head.
    unknown = [p for p in paths if idents[p] and not (
        records[p] and (records[p]["dev"], records[p]["ino"]) == (idents[p].dev, idents[p].ino))]
    candidates = {}
    if unknown:
        with conn.pipeline(transaction=False) as pipe:
            for p in unknown:
                pipe.hget(INODES_KEY, idents[p].inode_key)
                pipe.hget(HEADS_KEY, idents[p].head_key)
            found = iter(pipe.execute())
        for p in unknown:
            by_inode, by_head = next(found), next(found)
            old = next((os.fsdecode(o) for o in (by_inode, by_head) if o and os.fsdecode(o) != p), None)
            if old is not None:
                candidates[p] = old
    olds = sorted(set(candidates.values()))
    if olds:
        # An old name's record is stale, as a name's own is (see _records), once the name was pushed again.
        old_records, _ = _records(conn, olds, _latest(conn, olds))
        busy = _in_flight(conn, olds)  # an old name being scanned anew no longer has a record to hand over
        candidates = _one_heir({p: (o, old_records[o]) for p, o in candidates.items()
                                if old_records[o] and o not in busy}, idents)
    decisions = {}
    for p in paths:
        if idents[p] is None:
            decisions[p] = tracking.Decision(tracking.FULL, "unreadable")  # its job says why
        else:
            decisions[p] = tracking.decide(p, idents[p], records[p], patterns, candidates.get(p), analyse=analyse)
            if p in pending and decisions[p].reason == "new":
                decisions[p].reason = "its latest scan is not in the status database yet"
    return idents, decisions


def _one_heir(candidates, idents):
    """The candidates {path: (old name, its record)}, but one path per old name: the one with the old
    file's inode (it was renamed), or none. Copies alike in their first KiB (two logs with one banner,
    compressed in the same run) cannot be told apart: given one record, one got the other's counts."""
    claims = {}
    for path, (old, _) in candidates.items():
        claims.setdefault(old, []).append(path)
    kept = {}
    for old, paths in claims.items():
        if len(paths) > 1:
            paths = [p for p in paths if (candidates[p][1]["dev"], candidates[p][1]["ino"]) ==
                     (idents[p].dev, idents[p].ino)][:1]
        kept.update((p, candidates[p]) for p in paths)
    return kept


def _records(conn, paths, latest):
    """The record of each path's last finished scan, and the paths pushed again since it (`latest`:
    their latest job ids): their record is stale until the mirror has the newer scan (continuing it
    would be refused), so they have none."""
    raw = conn.hmget(SCANNED_KEY, [os.fsencode(p) for p in paths])
    records, pending = {}, set()
    for p, record in zip(paths, map(_record, raw, paths)):
        job_ids = latest.get(p)
        if record is not None and job_ids and job_ids[0] != record["job_id"]:
            record = None
            pending.add(p)
        records[p] = record
    return records, pending


def _record(raw, path="?"):
    return wire.read(raw, wire.Record, f"the scan record of {scanner.printable(path)}", warn_once)


def _latest(conn, paths):
    """{path: [id of each job of its latest scan]} for the paths pushed before (a split file has a job
    per part; an older logjobs kept the first one only)."""
    ids = conn.hmget(FILES_KEY, [os.fsencode(p) for p in paths])
    return {p: wire.text(i).split() for p, i in zip(paths, ids) if i}


def _in_flight(conn, paths, latest=None):
    """{path: [job ids]} for the paths whose latest scan (from `_latest`, read if not given) has a job
    that will still run."""
    known = (_latest(conn, paths) if latest is None else latest).items()
    ids = [job_id for _, job_ids in known for job_id in job_ids]
    running = {job_id for job_id, state in zip(ids, statuses(conn, ids)) if state in IN_FLIGHT}
    return {p: job_ids for p, job_ids in known if running.intersection(job_ids)}


def statuses(conn, job_ids):
    """RQ's status of each job id, or None for a job Redis no longer has, in one round trip."""
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(Job.key_for(job_id), "status")
        return [wire.text(s) if s else None for s in pipe.execute()]


def failure_reason(job):
    """The one-line reason RQ recorded for a failed job: the last line of its traceback."""
    result = job.latest_result()
    text = (result.exc_string or "") if result is not None else ""
    if refused_by_plain_worker(text):
        return PLAIN_WORKER
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines or lines[-1].startswith(_HORSE_DIED):
        # No code of ours ran to the end: the attempt's work-horse died, killed outright (RQ says so in
        # words of its own, or none).
        number = re.search(r"signal (\d+)", lines[-1]) if lines else None
        reason = f"the work-horse died (killed by {_signal_name(int(number[1])) if number else 'a signal'}, as by " \
                 "the OOM killer)"
        if job.get_status(refresh=False) == FAILED:
            reason += "; no retries left (does this file kill its workers?)"
        return reason
    # "logjobs.jobs.ScanFailed: /x: read error: ..." reads better without the class path.
    return lines[-1].removeprefix(f"{ScanFailed.__module__}.{ScanFailed.__name__}: ")


_HORSE_DIED = "Work-horse terminated unexpectedly"  # RQ's words, when it saw the horse die
PLAIN_WORKER = ("a worker without logjobs' classes took the job, and could not read it: start workers with "
                + " ".join(f"{k}={v}" for k, v in WORKER_ENV.items()) + " (see conf/systemd/logjobs-worker@.service)")


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


#: Seconds `wait` rides out Redis being away (restarting, failing over) before it gives up.
OUTAGE_PATIENCE = 60


def wait(conn, pushed, progress=None, poll=0.5, timeout=None, patience=OUTAGE_PATIENCE):
    """Poll RQ until every pushed job has ended; return each file's outcome (see `outcomes`).

    `progress(files_done)` is called after each poll; LogJobsError after `timeout` seconds. Redis may
    be away for `patience` seconds at a time (a restart: the jobs go on), then its error is raised.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    files = pushed.awaited
    pending, ended, outage = _each_once(files), set(), None
    while True:
        try:
            ended.update(j for j, status in zip(pending, statuses(conn, pending)) if status in ENDED)
            pending = [j for j in pending if j not in ended]
            if progress is not None:
                progress(sum(all(j in ended for j in ids) for ids in files.values()))
            if not pending:
                return outcomes(conn, pushed)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if outage is None:
                outage = time.monotonic()
                log.warning("lost Redis (%s); still waiting for the jobs, for up to %d s", exc, patience)
            elif time.monotonic() - outage > patience:
                raise
        else:
            outage = None
        if deadline is not None and time.monotonic() > deadline:
            raise LogJobsError(f"{len(pending)} job(s) still running after {timeout} s")
        time.sleep(poll)


def outcomes(conn, pushed):
    """Each pushed file's status, counts and failure reason, straight from Redis (for `push --wait`).

    A file skipped as in flight gets its earlier push's outcome, with `skipped` and without counts: its
    scan may continue one before it, whose counts this push does not know (`report` has them all)."""
    files = pushed.awaited
    job_ids = _each_once(files)
    jobs = dict(zip(job_ids, Job.fetch_many(job_ids, connection=conn)))
    with conn.pipeline(transaction=False) as pipe:
        for path, ids in files.items():
            for job_id in ids:
                pipe.hget(DONE_KEY + job_id, os.fsencode(path))
        records = iter(pipe.execute())
    result = []
    for path, ids in files.items():
        parts = [(job_id, done_record(next(records), job_id, path)) for job_id in ids]
        if path in pushed.decisions and not pushed.decisions[path].scan:
            parts = []  # only renamed: its counts are the record's
        errors = [rec["error"] if rec else _job_failure(jobs[job_id]) for job_id, rec in parts
                  if not rec or rec["error"] is not None]
        if path in pushed.skipped:
            result.append({"path": path, "job_id": ids[0], "status": "failed" if errors else "finished",
                           "counts": None, "error": errors[0] if errors else None, "skipped": True})
        elif errors:
            result.append({"path": path, "job_id": ids[0], "status": "failed", "counts": {}, "error": errors[0]})
        else:
            results = [scanner.ScanResult.from_dict(rec["result"]) for _, rec in parts]
            record = pushed.decisions[path].record if path in pushed.decisions else None
            if record is not None:  # a scan continuing an earlier one adds to its counts
                results.insert(0, scanner.ScanResult(record["counts"], record["lines"], record["end"]))
            merged = scanner.merge(results)
            result.append({"path": path, "job_id": ids[0], "status": "finished", "counts": merged.counts,
                           "error": None})
    return result


def _job_failure(job):
    return "the job vanished from Redis" if job is None else failure_reason(job)
