"""The RQ job function: a thin wrapper that run the scanner and report each file's state changes.

Workers import them by dotted path; of logjobs' settings they read only their own host's roots and
examples (see access). A job scans one file, one byte range of a big file, or a batch of small files
(forking a work-horse per small file would cost more than scanning it). Files an earlier attempt of
the same job finished are skipped, so a retry rescans only what failed. A failed job always raises,
so RQ's retry policy applies; when every failure in it is permanent, the job first empties its retry
budget, so it fails at once instead of burning retries on files that cannot heal.
"""

import contextlib
import logging
import os
import signal
import socket
import threading
import time

import redis
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from . import access, events, formats, scanner, tracking, wire
from .defaults import (
    DEFAULT_BEAT_INTERVAL,
    DEFAULT_BEAT_TTL,
    FAILED,
    FINISHED,
    QUEUED,
    SCHEDULED,
    STARTED,
)
from .exceptions import ScanError
from .store import Attempts, CanceledFiles, DoneFiles, HandedOn, Heartbeats

log = logging.getLogger(__name__)

#: Finished files are reported at least this often (s) during a long batch: it bounds how long a
#: result waits in the job before the mirror can see it.
FLUSH_INTERVAL = 0.25
#: Seconds a batch goes on before it asks again which of its files `cancel` took back.
CANCEL_CHECK = 0.5
#: Seconds between a work-horse's tries to reach Redis again, with results to send.
REDIS_RETRY_INTERVAL = 1.0
#: The dotted path `push` enqueues, and workers import (see defaults.JOB_FUNCTIONS).
SCAN = f"{__name__}.scan"


def scan(tasks, options):
    """Count, in each file of `tasks` (wire.Task: a whole file, what was appended to it, or a byte
    range of it), the lines containing each pattern of `options` (wire.ScanOptions), and (with its
    `analyse`) their levels, top messages and times.

    A task's `resume` is set when its scan continues an earlier one, or is one part of several: the
    file must still begin with that head (the one pushed), and hold at least `since` bytes (else it
    was replaced or truncated since). Arguments not as `push` makes them fail the job for good.
    """
    job = get_current_job()
    try:
        tasks, options = (
            wire.convert(tasks, list[wire.Task]),
            wire.convert(options, wire.ScanOptions),
        )
    except wire.Invalid as exc:
        job.retries_left = 0
        raise ScanFailed(f"malformed job arguments: {exc}") from None
    return _run(job, tasks, options)


def files_of(job):
    """(path, part) of each file a scan job covers, read from its arguments (none: not as push makes
    them)."""
    try:
        return [(task.path, task.part) for task in wire.convert(job.args[0], list[wire.Task])]
    except (wire.Invalid, IndexError):
        return []


def _scan(task, options):
    """scanner.scan, after checking that a file whose scan continues an earlier one (or is split) is
    still the file pushed; returns its result, and for a scan of a whole file, the tracking.Identity
    of the file it read (it may not be the one pushed: the log rotated while the job waited) or
    None."""
    # Taken before the scan opens the file: had the log rotated in between, the counts would be the
    # new file's, under the old one's identity, and the old file, found under its new name, would
    # take them.
    roots = access.worker_access()  # this host's, never the job's
    whole = task.resume is None and task.start == 0 and task.end is None
    identity = (
        tracking.Identity.of(task.path, roots) if whole else None
    )  # unreadable: the scan says why
    if task.resume is not None:
        _check_still_pushed(task.path, task.resume, roots)
    # Without the analysis (--counts-only), lines go uncounted too: counting them is a pass over
    # every byte, slower than the pattern search (issue 5). The analysis reads every line anyway.
    examples = (
        options.examples and access.worker_settings().examples
    )  # off on this host: off, whatever the job says
    mine = access.worker_settings().formats  # this host's own formats, never the job's
    how = dict(
        analyse=options.analyse,
        lines=options.analyse,
        roots=roots,
        examples=examples,
        formats=formats.known(mine),
        ignore_case=options.ignore_case,
    )
    result = scanner.scan(task.path, options.patterns, task.start, task.end, **how)
    if result.tail and result.compression is None and task.end is None:
        # Its last line may be written on: the next push starts there, less that line's result.
        end = task.start + result.bytes
        result.partial = scanner.last_line(task.path, options.patterns, end, task.start, **how)
    return result.to_dict(), identity


def _check_still_pushed(path, resume, roots):
    """ScanError (for good) unless the file still begins with the head pushed, and holds `since`
    bytes."""
    st, compression, data = scanner.peek(path, resume.head_len, roots)
    name = scanner.printable(path)
    if tracking.fingerprint(data) != resume.head:
        raise ScanError(
            f"{name}: replaced since it was pushed (its first bytes differ); push it again",
            permanent=True,
        )
    if compression is None and st.st_size < resume.since:
        raise ScanError(f"{name}: truncated since it was pushed; push it again", permanent=True)


class ScanFailed(Exception):
    """Some files of the job failed; raised so that RQ records the job failed (and retries it)."""


def _run(job, tasks, options):
    conn = job.connection
    attempt = Attempts(conn).next(job.id)
    worker = os.environ.get("RQ_WORKER_ID") or job.worker_name or socket.gethostname()
    done = DoneFiles(conn).finished(job.id)
    taken_back = _TakenBack(conn, job.id)
    todo = [t for t in tasks if t.path not in done and t.path not in taken_back.paths]
    report = Reporter(conn, job.id, attempt, worker)
    report.started(todo)
    failures = {}

    def on_beat():
        report.announce()
        taken_back.watch(report.current)

    with taken_back.stopping(report), Heartbeat(conn, job.id, worker, on_beat=on_beat):
        for i, task in enumerate(todo):
            if taken_back(task.path):
                continue  # `cancel` said so, and told the mirror
            try:
                with report.scanning(task.path, task.part):
                    result, identity = _scan(task, options)
            except TakenBack:
                taken_back.skipped.add(task.path)
                continue
            except JobTimeoutException as exc:
                # The job's time is up: what it did not get to waits for the retry too.
                failures.update(((t.path, t.part), exc) for t in todo[i:])
                break
            except Exception as exc:
                failures[(task.path, task.part)] = exc
            else:
                report.finished(task.path, task.part, result, identity)
    if failures:
        _report_failures(job, report, failures)
    report.flush()
    report.deliver(lambda: _leave_if_handed_on(conn, job.id, attempt))
    if failures:
        (path, _), exc = next(iter(failures.items()))
        more = f" (and {len(failures) - 1} more file(s))" if len(failures) > 1 else ""
        # A ScanError's reason names its file already.
        named = (
            reason(exc)
            if isinstance(exc, ScanError)
            else f"{scanner.printable(path)}: {reason(exc)}"
        )
        raise ScanFailed(f"{named}{more}") from exc
    # A job whose files were all taken back ends `finished` in RQ: its result says so.
    scanned = len(todo) - len(taken_back.skipped)
    return {"files": len(tasks), "scanned": scanned, "canceled": len(taken_back.skipped)}


class TakenBack(BaseException):  # noqa: N818 - not an error: `except Exception` must let it by
    """Raised in the scan of a file `logjobs cancel` took back, by the signal its job's heartbeat
    thread sends (see _TakenBack.watch)."""


#: The signal a job's heartbeat thread sends its own process to stop a scan taken back (RQ's
#: work-horse uses SIGALRM for its timeout, SIGRTMIN for its own stop requests).
STOP_SIGNAL = signal.SIGUSR2


class _TakenBack:
    """Whether `logjobs cancel` took a file of the job back: asked of Redis at most every
    CANCEL_CHECK seconds, so a batch of small files costs a round trip, not one per file; and, at
    every heartbeat, of the file being scanned, whose scan then stops."""

    def __init__(self, conn, job_id):
        self.files = CanceledFiles(conn)
        self.job_id = job_id
        self.paths = self.files.get(job_id)
        self.checked = time.monotonic()
        self.skipped = set()
        self.stop = None  # (path, part) whose scan to stop
        self.armed = False

    @contextlib.contextmanager
    def stopping(self, report):
        """While in it, STOP_SIGNAL raises TakenBack in the scan of the file `watch` found taken
        back, if that scan is still the one under way (`report.current`). Only where the job runs
        in its process's main thread, as in RQ's work-horse: elsewhere scans are not stopped."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def raise_if_still(signum, frame):
            if self.stop is not None and self.stop == report.current:
                raise TakenBack(self.stop[0])

        before = signal.signal(STOP_SIGNAL, raise_if_still)
        self.armed = True
        try:
            yield
        finally:
            self.armed = False
            signal.signal(STOP_SIGNAL, before)

    def watch(self, scanning):
        """In the heartbeat's thread: stop the scan under way, `scanning` ((path, part) or None),
        if its file was taken back."""
        if scanning is not None and self.armed and scanning[0] in self.files.get(self.job_id):
            self.stop = scanning
            os.kill(os.getpid(), STOP_SIGNAL)

    def __call__(self, path):
        if time.monotonic() - self.checked > CANCEL_CHECK:
            self.paths = self.files.get(self.job_id)
            self.checked = time.monotonic()
        if path in self.paths:
            self.skipped.add(path)
            return True
        return False


def _report_failures(job, report, failures):
    """Report each failed file: failed for good now, or waiting for the retry RQ is about to decide
    on. When every failure is for good, the job spends no retry on them."""
    if all(isinstance(e, ScanError) and e.permanent for e in failures.values()):
        job.retries_left = 0
    state = next_state(job)
    for (path, part), exc in failures.items():
        permanent = isinstance(exc, ScanError) and exc.permanent
        report.failed(
            path, part, FAILED if permanent else state, file_reason(path, exc), final=permanent
        )


def _leave_if_handed_on(conn, job_id, attempt):
    """End the work-horse here if the keeper gave this attempt up (it was cut off by a partition,
    and is back): its events went for the record, but RQ's handling of its end, with the horse's
    stale copy of the job, would undo the newer attempt's (a second result; or a retry of a job that
    finished)."""
    if HandedOn(conn).given_up(job_id, attempt):
        log.warning(
            "%s: attempt %d was given up while cut off, and the job handed on; leaving it",
            job_id,
            attempt,
        )
        logging.shutdown()
        os._exit(0)


class Reporter:
    """Sends a job's events, and records each file done, in few round trips.

    `started` goes out at once for the job's first file only: it says the attempt runs. A batch's
    other files stay queued until their outcome, which carries when their scan began (`started_at`):
    a started event for each of hundreds of small files, sent as the job starts, would only say they
    wait in a running job, and would double the mirror's work. A file still being scanned when the
    heartbeat beats (every 2 s) gets its `started` then (`announce`, from the heartbeat's thread).
    """

    def __init__(self, conn, job_id, attempt, worker):
        self.conn = conn
        self.job_id = job_id
        self.attempt = attempt
        self.worker = worker
        self.pending = []
        self.done = {}
        self.flushed_at = time.monotonic()
        self.begun = {}  # path: when its scan began, or None once its `started` is sent
        self.current = None  # (path, part) being scanned
        self.lock = threading.Lock()  # begun and current, shared with the heartbeat's thread

    def started(self, tasks):
        if tasks:
            path, part = tasks[0].path, tasks[0].part
            self.pending.append(
                events.Event(self.job_id, path, STARTED, self.attempt, part, worker=self.worker)
            )
            self.begun[path] = None
        self.flush()

    @contextlib.contextmanager
    def scanning(self, path, part):
        with self.lock:
            self.begun.setdefault(path, time.time())
            self.current = (path, part)
        try:
            yield
        finally:
            with self.lock:
                self.current = None

    def announce(self):
        """Send `started` for the file being scanned, unless sent: a long scan in a batch shows as
        one."""
        with self.lock:  # held while sending: its outcome, read under the lock, must follow it
            path, part = self.current or (None, None)
            at = self.begun.get(path)
            if at is not None:
                events.emit(
                    self.conn,
                    events.Event(
                        self.job_id, path, STARTED, self.attempt, part, at=at, worker=self.worker
                    ),
                )
                self.begun[path] = None

    def _began(self, path):
        """When the file's scan began, if its `started` was not sent (and forget it)."""
        with self.lock:
            return self.begun.pop(path, None)

    def finished(self, path, part, result, identity=None):
        self.pending.append(
            events.Event(
                self.job_id,
                path,
                FINISHED,
                self.attempt,
                part,
                worker=self.worker,
                result=result,
                started_at=self._began(path),
                identity=identity.to_dict() if identity else None,
            )
        )
        # For a retry, `push --wait` and the reconciler: no analysis (it can take hundreds of KB,
        # and its event carries it to the database), as the record stays as long as RQ keeps a
        # failed job.
        self.done[path] = {"result": {k: v for k, v in result.items() if k != "analysis"}}
        if time.monotonic() - self.flushed_at >= FLUSH_INTERVAL:
            self.flush()

    def failed(self, path, part, state, error, final):
        self.pending.append(
            events.Event(
                self.job_id,
                path,
                state,
                self.attempt,
                part,
                worker=self.worker,
                error=error,
                started_at=self._began(path),
            )
        )
        if final:
            self.done[path] = {"error": error}

    def flush(self):
        self.deliver(self._send)
        self.pending = []
        self.done = {}
        self.flushed_at = time.monotonic()

    def _send(self):
        with self.conn.pipeline(transaction=True) as pipe:
            if self.pending:
                events.emit(pipe, *self.pending)
            if self.done:
                DoneFiles.record(pipe, self.job_id, self.done)
            pipe.execute()

    def deliver(self, send):
        """Call `send` (Redis commands) until Redis takes them.

        What the scans found is only here: cut off from Redis (a partition, a restart), the
        work-horse waits for it, rather than fail the attempt, which RQ would retry from its stale
        copy of the job once Redis is back, even if the job had been handed on and had finished
        elsewhere. Back, it asks first whether the keeper gave this attempt up meanwhile: if so, it
        ends there (see _leave_if_handed_on). RQ's job timeout still ends a wait that outlasts it.
        """
        while True:
            try:
                return send()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("%s: cannot reach Redis (%s); waiting for it", self.job_id, exc)
                time.sleep(REDIS_RETRY_INTERVAL)
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    _leave_if_handed_on(self.conn, self.job_id, self.attempt)


def next_state(job):
    """The state RQ puts a job in after a failed attempt: retried now, retried later, or failed."""
    if not job.retries_left:
        return FAILED
    return SCHEDULED if job.get_retry_interval() else QUEUED


def file_reason(path, exc):
    """The reason a file's row shows for a failed attempt at it: beside its path, so without it
    (a ScanError's message names its file first)."""
    return reason(exc).removeprefix(f"{scanner.printable(path)}: ")


def reason(exc):
    """A one-line reason for a failed attempt."""
    text = str(exc).strip().splitlines()
    detail = text[0] if text else ""
    if isinstance(exc, ScanError):
        return detail
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


class Heartbeat:
    """Refresh a short-lived key while a job runs, so the keeper sees a dead host within seconds.

    RQ's own heartbeat comes from the worker's parent process every 30 s and only expires 60 s
    later; this one comes from the work-horse itself, every DEFAULT_BEAT_INTERVAL seconds, and then
    calls `on_beat` (in its thread).
    """

    def __init__(
        self,
        conn,
        job_id,
        worker,
        interval=DEFAULT_BEAT_INTERVAL,
        ttl=DEFAULT_BEAT_TTL,
        on_beat=None,
    ):
        self.beats = Heartbeats(conn)
        self.job_id = job_id
        self.worker = worker
        self.on_beat = on_beat
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
            self.beats.stop(self.job_id)
        except redis.RedisError:
            pass  # it expires by itself

    def _beat(self):
        self.beats.beat(self.job_id, self.worker, self.ttl)

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                self._beat()
                if self.on_beat:
                    self.on_beat()
            except redis.RedisError as exc:
                # Cut off from Redis: keep scanning; the keeper may hand the job to another worker,
                # and the mirror will ignore whichever result turns out to be stale.
                log.warning("heartbeat of %s failed: %s", self.job_id, exc)
