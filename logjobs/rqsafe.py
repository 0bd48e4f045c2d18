"""RQ's classes as every logjobs process uses them: data only, and logjobs' own job functions only.

Whoever can write to Redis decides what RQ loads. RQ's default serializer is pickle, applied
wherever a job or a result is read (a worker, a registry's clean-up, `Job.fetch`, rq-dashboard), and
a job names any importable function, callback or webhook. Here a job and its result are JSON, read
back with bounded decompression; a job may only name a function of JOB_FUNCTIONS, with plain
arguments, and no callback or webhook. Anything else is *refused*: its job fails with the reason
when a worker takes it (no retries), and the processes that only read it (the mirror, the dashboard)
skip it.

Workers get these classes from their environment (WORKER_ENV), which the units in conf/ set:

    RQ_WORKER_CLASS=logjobs.rqsafe.Worker RQ_JOB_CLASS=logjobs.rqsafe.Job rq worker high default low

A worker started without them takes logjobs' jobs for pickles, cannot read them, and fails them
("a worker without logjobs' classes took the job": see `refused_by_plain_worker`).
"""

import base64
import logging
import os
import re
import signal
import socket
import threading
import uuid
import zlib

import rq
import rq.worker_registration
from rq.exceptions import DeserializationError
from rq.job import Job as RQJob
from rq.queue import Queue as RQQueue
from rq.registry import ScheduledJobRegistry
from rq.results import Result as RQResult
from rq.scheduler import RQScheduler
from rq.utils import current_timestamp

from . import fastjson
from .children import dies_with_parent
from .defaults import JOB_FUNCTIONS
from .exceptions import LogJobsError, one_line

log = logging.getLogger(__name__)

#: The environment a worker needs beyond RQ_REDIS_URL: the one place that lists it (the units in
#: conf/, `logjobs worker`, selftest, bin/demo and the tests all take it from here).
WORKER_ENV = {"RQ_WORKER_CLASS": f"{__name__}.Worker", "RQ_JOB_CLASS": f"{__name__}.Job"}
#: Bytes a job's call (function name and arguments) may inflate to: 500 paths of 4 KiB are 2 MB.
MAX_CALL_BYTES = 16 << 20
#: Bytes of a failure's traceback kept when it is read back.
MAX_EXC_BYTES = 1 << 20
#: Job hash fields that name code to import and run, or a URL to call: logjobs sets none of them.
CODE_FIELDS = (
    b"success_callback_name",
    b"failure_callback_name",
    b"stopped_callback_name",
    b"webhooks",
)
#: Seconds an idle worker's command listener waits between looks at whether it must stop (RQ's: 60,
#: during which a SIGTERMed worker cannot exit: the join of redis-py's PubSubWorkerThread waits for
#: it).
PUBSUB_WAIT = 1.0


class Refused(DeserializationError, LogJobsError):
    """What a job in Redis holds is not a logjobs job: it is not run, nor unpickled, nor
    imported."""


class Serializer:
    """JSON for jobs, results and metadata: loading it can only make plain values."""

    @staticmethod
    def dumps(obj) -> bytes:
        return fastjson.dumps(obj).encode()

    @staticmethod
    def loads(data):
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data).decode("utf-8", "surrogatepass")
        return fastjson.loads(data)


def inflate(blob: bytes, limit: int, what: str) -> bytes:
    """zlib-inflate `blob` (as RQ compresses job data and tracebacks), or `blob` itself if it is not
    zlib; Refused if the result would pass `limit` bytes (a zip bomb would take any memory)."""
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(blob, limit + 1)
    except zlib.error:
        data = blob  # RQ takes what is not zlib as uncompressed
    else:
        if not inflater.eof:
            if len(data) > limit or inflater.unconsumed_tail:
                raise Refused(f"{what} is over {limit >> 20} MiB")
            data = blob  # a truncated stream: RQ would fail to inflate it and take it as it is
    if len(data) > limit:
        raise Refused(f"{what} is over {limit >> 20} MiB")
    return data


def check_call(call) -> tuple[str, list, dict]:
    """(function name, args, kwargs) of a job's decoded call, if it is a call of one of logjobs' job
    functions with plain arguments; else Refused, naming what is wrong."""
    if not isinstance(call, list) or len(call) != 4:
        raise Refused("not a logjobs job: its data is not [function, instance, args, kwargs]")
    func_name, instance, args, kwargs = call
    if not isinstance(func_name, str) or func_name not in JOB_FUNCTIONS:
        shown = one_line(repr(func_name))[:200]
        raise Refused(f"not a logjobs job: {shown} is not one of logjobs' job functions")
    if instance is not None or not isinstance(args, list) or not isinstance(kwargs, dict):
        raise Refused(
            f"not a logjobs job: a call of {func_name} must have a list of arguments and no "
            f"instance"
        )
    return func_name, args, kwargs


def decode_call(data: bytes) -> tuple[str, list, dict]:
    """check_call() of a job's data as RQ stores it (zlib-compressed JSON)."""
    plain = inflate(data, MAX_CALL_BYTES, "the job's data")
    try:
        call = Serializer.loads(plain)
    except (ValueError, UnicodeDecodeError):
        raise Refused("not a logjobs job: its data is not JSON (a pickle, or garbage)") from None
    return check_call(call)


class Job(RQJob):
    """RQ's Job, loaded without trusting Redis: JSON only, bounded, no callbacks or webhooks, and
    only logjobs' job functions. Loading never fails on what a job holds; running a job that is not
    logjobs' raises Refused, and spends no retry on it."""

    def __init__(self, id=None, connection=None, serializer=None):  # noqa: A002 - RQ's signature
        super().__init__(id, connection=connection, serializer=Serializer)
        self.refused: str | None = None

    def restore(self, raw_data):
        fields = dict(raw_data)
        data = fields.pop(b"data", fields.pop("data", None))
        exc_info = fields.pop(b"exc_info", None)
        carried = [name.decode() for name in CODE_FIELDS if fields.pop(name, None)]
        try:
            # RQ takes what it cannot inflate (an empty value) as it is: the data is set below.
            super().restore({**fields, b"data": b""})
        except Exception as exc:  # noqa: BLE001 - a malformed hash is hostile data, not a bug here
            origin = fields.get(b"origin") or b""
            super().restore(
                {
                    b"data": b"",
                    b"origin": origin if RQ_ID.fullmatch(origin) else b"",
                    b"status": b"queued",
                }
            )
            self.refused = (
                f"its job hash is malformed ({type(exc).__name__}: {one_line(str(exc))[:200]})"
            )
        if data is None:
            self.refused = "its job hash has no data"
            data = b""
        if carried:
            self.refused = f"not a logjobs job: it names {', '.join(carried)}"
        try:
            self.data = inflate(data, MAX_CALL_BYTES, "the job's data")
        except Refused as exc:
            self.data, self.refused = b"", str(exc)
        if exc_info:
            self._exc_info = _text(exc_info, MAX_EXC_BYTES, "the job's traceback")

    def _deserialize_data(self):
        try:
            if self.refused:
                raise Refused(self.refused)
            self._func_name, args, kwargs = decode_call(self.data)
        except Refused:
            self.retries_left = 0  # it would only be refused again
            raise
        self._instance = None
        self._args = args
        self._kwargs = kwargs

    def get_call_string(self):
        try:
            return super().get_call_string()
        except Refused as exc:
            return f"(refused: {exc})"

    def get_meta(self, refresh: bool = True) -> dict:
        try:
            return super().get_meta(refresh)
        except (ValueError, UnicodeDecodeError):
            self.meta = {"unreadable": "this job's metadata in Redis is not JSON"}
            return self.meta

    def latest_result(self, timeout: int = 0):
        return Result.fetch_latest(self, serializer=Serializer, timeout=timeout)

    def results(self):
        return Result.all(self, serializer=Serializer)


class Result(RQResult):
    """RQ's Result, read back as JSON with a bounded traceback; one that cannot be read is a failure
    saying so, never an error of the reader's."""

    @classmethod
    def restore(cls, job_id, result_id, payload, connection, serializer=None):
        fields = dict(payload)
        encoded = fields.pop(b"exc_string", None)
        try:
            result = super().restore(
                job_id, result_id, fields, connection=connection, serializer=Serializer
            )
            if encoded:
                result.exc_string = _text(
                    base64.b64decode(encoded), MAX_EXC_BYTES, "the traceback"
                ).decode("utf-8", "replace")
        except Exception as exc:  # noqa: BLE001 - whatever Redis holds, a reader goes on
            warn_once(
                ("result", job_id),
                "job %s: cannot read its result (%s): %s",
                job_id,
                type(exc).__name__,
                one_line(str(exc))[:200],
            )
            return RQResult(
                job_id,
                RQResult.Type.FAILED,
                connection=connection,
                id=result_id,
                exc_string=f"logjobs: this result in Redis cannot be read ({type(exc).__name__})",
            )
        return result


def _text(blob: bytes, limit: int, what: str) -> bytes:
    try:
        return inflate(blob, limit, what)
    except Refused as exc:
        return str(exc).encode()


#: What RQ takes for a job id, and for a queue or worker name: anything else in one of its sets or
#: registries was put there by hand, and RQ's own readers fail on it (a name that is not UTF-8, a
#: member with two colons).
RQ_ID = re.compile(rb"[A-Za-z0-9_-]+")
NAME = re.compile(r"[^\x00-\x1f\x7f]{1,512}")


def names(members, prefix: str, what: str, pattern=NAME) -> list[str]:
    """The names of `members` (bytes, each `prefix` + name) that RQ can read; the others are
    skipped, with a warning once each."""
    found = []
    for member in members:
        try:
            text = member.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        name = text[len(prefix) :] if text is not None and text.startswith(prefix) else None
        if name is None or not pattern.fullmatch(name):
            warn_once((what, member), "skipping %r in Redis: not a %s", member[:200], what)
            continue
        found.append(name)
    return found


class Queue(RQQueue):
    """RQ's Queue, with logjobs' Job and Serializer whatever it is given (RQ's CLI passes its
    own)."""

    job_class = Job

    def __init__(
        self, name="default", connection=None, *args, job_class=None, serializer=None, **kwargs
    ):
        super().__init__(name, connection, *args, job_class=Job, serializer=Serializer, **kwargs)

    @classmethod
    def all(cls, connection, *args, **kwargs):
        """Every queue RQ knows of, but for names in its set of queues that no queue can have."""
        keys = connection.smembers(cls.redis_queues_keys)
        return [
            cls(name, connection=connection)
            for name in sorted(names(keys, cls.redis_queue_namespace_prefix, "queue key"))
        ]


def default_name() -> str:
    """A worker's name when it is given none: its host and pid, which say where it runs wherever
    the name shows (RQ's own is a bare random id), and a random tail, since RQ keeps a SIGKILLed
    worker's name registered for minutes and a new worker with the same pid would be refused it."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker(rq.Worker):
    """RQ's forking Worker on logjobs' classes, which says at start where it may read, stops
    within PUBSUB_WAIT seconds of a SIGTERM when idle, and whose work-horse dies with it (a worker
    SIGKILLed left its horse scanning on, its events racing the recovery of its job)."""

    job_class = Job
    queue_class = Queue

    def __init__(self, queues, *args, job_class=None, queue_class=None, serializer=None, **kwargs):
        names = [q.name if isinstance(q, RQQueue) else q for q in rq.utils.ensure_job_list(queues)]
        if not args and not kwargs.get("name"):
            kwargs["name"] = default_name()
        super().__init__(
            names, *args, job_class=Job, queue_class=Queue, serializer=Serializer, **kwargs
        )

    @classmethod
    def all(cls, connection=None, job_class=None, queue_class=None, queue=None, serializer=None):
        """Every live worker, but for those whose record in Redis cannot be read (skipped, with a
        warning)."""
        connection = queue.connection if queue is not None else connection
        workers = []
        for name in cls._names(connection, queue):
            try:
                worker = cls.find_by_key(
                    cls.redis_worker_namespace_prefix + name, connection=connection
                )
            except (ValueError, TypeError, KeyError) as exc:
                warn_once(("worker", name), "skipping worker %r in Redis: %s", name[:200], exc)
                continue
            if worker is not None:
                workers.append(worker)
        return workers

    def fork_work_horse(self, job, queue):
        self._worker_pid = os.getpid()
        super().fork_work_horse(job, queue)

    def main_work_horse(self, job, queue):
        dies_with_parent(signal.SIGKILL, parent=self._worker_pid)
        super().main_work_horse(job, queue)

    @classmethod
    def count(cls, connection=None, queue=None):
        return len(cls._names(queue.connection if queue is not None else connection, queue))

    @classmethod
    def _names(cls, connection, queue):
        """The names of the workers RQ registered (on `queue`), but for members no worker can
        have."""
        key = (
            rq.worker_registration.WORKERS_BY_QUEUE_KEY % queue.name
            if queue is not None
            else cls.redis_workers_keys
        )
        return names(connection.smembers(key), cls.redis_worker_namespace_prefix, "worker key")

    def bootstrap(self, *args, **kwargs):
        super().bootstrap(*args, **kwargs)
        from .access import (
            describe_worker_access,
        )  # reads this host's settings: only in a real worker

        self.log.info(
            "Worker %s: logjobs: %s", self.name, describe_worker_access(warn=self.log.warning)
        )

    def subscribe(self):
        """RQ's command listener, with a short wait: RQ's waits 60 s, which a warm shutdown waits
        out."""
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_WAIT, daemon=True, exception_handler=self._pubsub_exception_handler
        )


#: RQ statuses after which a job will not run again (None: gone from Redis).
ENDED = frozenset({"finished", "failed", "stopped", "canceled", None})
#: RQ statuses of a job that will still run: a file whose job is in one is not pushed again.
IN_FLIGHT = frozenset({"queued", "started", "scheduled", "deferred"})


def statuses(conn, job_ids) -> list:
    """RQ's status of each job id, or None for a job Redis no longer has, in one round trip."""
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(Job.key_for(job_id), "status")
        return [raw.decode("utf-8", "backslashreplace") if raw else None for raw in pipe.execute()]


def enqueue_due(conn, queue_names):
    """Move the retries whose interval is over from each queue's ScheduledJobRegistry back to the
    queue; returns their ids. What RQScheduler.enqueue_scheduled_jobs does, with logjobs' Job (RQ's
    fetches every job with rq.job.Job), past whatever no job id can be. Call it holding RQ's
    scheduler lock of each queue."""
    moved = []
    for name in queue_names:
        queue = Queue(name, connection=conn)
        registry = ScheduledJobRegistry(name, connection=conn, job_class=Job, serializer=Serializer)
        job_ids = registry_ids(
            conn, registry.key, conn.zrangebyscore(registry.key, 0, current_timestamp())
        )
        for job_id, job in zip(job_ids, Job.fetch_many(job_ids, connection=conn)):
            if job is not None:
                try:
                    queue.enqueue_job(job, at_front=job.should_enqueue_at_front())
                except (
                    ValueError
                ) as exc:  # RQ refuses what a hostile job hash asks (a rate limit...)
                    warn_once(
                        ("schedule", job_id),
                        "job %s: not enqueued from %s: %s",
                        job_id,
                        registry.key,
                        exc,
                    )
                else:
                    moved.append(job_id)
            registry.remove(job_id)
    return moved


def registry_ids(conn, key, members, composite=False) -> list:
    """The job ids (with `composite`, the (job id, execution id) pairs) of the members of RQ's
    registry `key`. A member that is no job id, which RQ's own readers fail on every time, is
    removed, with a warning."""
    found, junk = [], []
    for member in members:
        job_id, sep, execution = member.partition(b":")
        if (
            not RQ_ID.fullmatch(job_id)
            or composite != bool(sep)
            or (sep and not RQ_ID.fullmatch(execution))
        ):
            junk.append(member)
            continue
        found.append((job_id.decode(), execution.decode()) if composite else job_id.decode())
    if junk:
        warn_once(
            ("registry", key, junk[0]),
            "removing %d member(s) from %s that are no RQ job, e.g. %r",
            len(junk),
            key,
            junk[0][:200],
        )
        conn.zrem(key, *junk)
    return found


class Scheduler(RQScheduler):
    """RQ's scheduler, for its per-queue locks (a `rq worker --with-scheduler` takes them too): the
    due jobs of the queues it holds are moved by `enqueue_due`."""

    def enqueue_scheduled_jobs(self):
        return enqueue_due(self.connection, sorted(self.acquired_locks or ()))


def enqueue_from_rq_cron():
    """Make `rq cron` (in the process that loads conf/cron.py) enqueue with logjobs' Queue: RQ's
    cron enqueues with RQ's own (pickle), whose jobs logjobs' workers refuse. rq.cron names its
    Queue at import."""
    import rq.cron

    rq.cron.Queue = Queue


def refused_by_plain_worker(exc_string: str) -> bool:
    """Did a worker started without WORKER_ENV fail the job, reading logjobs' JSON as a pickle?"""
    return "DeserializationError" in exc_string and "Refused" not in exc_string


_warned: set = set()
_warned_lock = threading.Lock()
#: Keys of things warned about, at most: a reader meeting garbage again and again warns once per
#: thing.
_WARNED_MAX = 10_000


def warn_once(key, message, *args):
    """Log a warning about hostile or broken data in Redis once per `key` in this process."""
    with _warned_lock:
        if key in _warned:
            return
        if len(_warned) >= _WARNED_MAX:
            _warned.clear()
        _warned.add(key)
    log.warning(message, *args)


def environ_with_worker_classes(environ=None):
    """`environ` (os.environ) with WORKER_ENV set: what an `rq worker` logjobs starts gets."""
    return {**(os.environ if environ is None else environ), **WORKER_ENV}
