"""What plain `rq worker` processes leave undone, done by the mirror's loop: due retries, dead
scans.

RQ moves a retry waiting its interval back to its queue only in a process running RQ's scheduler,
and recovers a job from a dead worker only 90 s after the worker's last heartbeat, when some live
worker's maintenance (every 10 minutes) gets to it. The keeper runs RQ's own scheduler, under RQ's
own per-queue locks, and watches the heartbeat every running scan keeps (jobs.Heartbeat): a scan
whose heartbeat has been gone for `grace` seconds is handed to RQ's abandoned-job handling at once,
which retries it while its budget lasts.
"""

import logging
import time

from rq.exceptions import NoSuchJobError

from . import events, wire
from .defaults import DEFAULT_ABANDON_GRACE, FAILED, JOB_ID_PREFIX, QUEUES, RECOVERY_MARK
from .jobs import files_of, next_state
from .rqsafe import Job, Queue, Refused, Scheduler, registry_ids, warn_once
from .store import Attempts, DoneFiles, HandedOn, Heartbeats, Orphans

log = logging.getLogger(__name__)

#: Attempt counts looked at per `forget_expired` call: a step of a sweep, a few milliseconds.
FORGET_BATCH = 1000


#: The owner of RQ's scheduler locks for every keeper. Keepers run only under the mirror's lock, so
#: they need no locks against one another; with a name of its own, a mirror restarted after a
#: SIGKILL (or a standby taking over) found its predecessor's locks held for their 60 s, and retries
#: waited as long. Against any other scheduler (`rq worker --with-scheduler`) the locks still hold.
SCHEDULER_NAME = "logjobs-mirror"


class Keeper:
    """Enqueues due retries and recovers abandoned scans, in every queue; call `tick()` every second
    or so."""

    def __init__(self, conn, grace=DEFAULT_ABANDON_GRACE, clock=time.monotonic):
        self.conn = conn
        self.grace = grace
        self.clock = clock
        self.queues, self.scheduler = [], None
        # (job id, execution id) -> when its heartbeat was first seen missing
        self._silent_since = {}
        self._forget_cursor = 0  # where the sweep of the attempt counts goes on
        self.attempts = Attempts(conn)
        self.beats = Heartbeats(conn)
        self.orphans = Orphans(conn)

    def tick(self):
        """One pass; returns the ids of the jobs recovered."""
        self._follow_queues()
        self.scheduler.acquire_locks()
        self.scheduler.enqueue_scheduled_jobs()
        return self.recover_abandoned()

    def close(self):
        if self.scheduler is not None:
            self.scheduler.release_locks()

    def _follow_queues(self):
        """Watch every queue RQ knows (priority queues, and any a user or `selftest` made)."""
        names = sorted(set(QUEUES) | {q.name for q in Queue.all(connection=self.conn)})
        if [q.name for q in self.queues] != names:
            self.close()
            self.queues = [Queue(name, connection=self.conn) for name in names]
            # RQScheduler installs its own log handler: keep it as quiet as our own logger.
            self.scheduler = Scheduler(
                names,
                connection=self.conn,
                logging_level=log.getEffectiveLevel(),
                name=SCHEDULER_NAME,
            )
            # It would rebuild a client from our client's pool settings, which fails for a client
            # that follows Redis Sentinel; ours serves it as well.
            self.scheduler._connection = self.conn

    def requeue_orphans(self, queued_ids):
        """Put back jobs that have said "queued" while sitting in no queue for `grace` seconds.

        A worker listening on several queues pops a job with a plain BLPOP (RQ keeps an intermediate
        list only for one-queue workers), so a worker killed between that pop and registering the
        job as started leaves it in no list and no registry: lost, unless someone looks. A live
        worker registers what it pops within milliseconds. When each job was first seen so is kept
        in Redis, so that the look survives the mirror restarting (or `mirror --once` runs).
        """
        waiting = set()
        if queued_ids:
            with self.conn.pipeline(transaction=False) as pipe:
                for queue in self.queues:
                    pipe.lrange(queue.key, 0, -1)
                    pipe.lrange(queue.intermediate_queue_key, 0, -1)
                waiting = {wire.text(job_id) for ids in pipe.execute() for job_id in ids}
        lost = {job_id for job_id in queued_ids if job_id not in waiting}
        now, requeued = time.time(), []
        seen = self.orphans.seen(now)
        due = sorted(j for j in lost if j in seen and now - seen[j] >= self.grace)
        for job in Job.fetch_many(due, connection=self.conn):
            if job is not None and job.get_status() == "queued":
                log.warning(
                    "requeueing %s: queued, but in no queue (its worker died as it took it)", job.id
                )
                Queue(job.origin, connection=self.conn).enqueue_job(job, at_front=True)
                requeued.append(job.id)
        self.orphans.update(
            [j for j in seen if j not in lost or j in requeued],
            {j: now for j in lost if j not in seen},
        )
        return requeued

    def forget_expired(self, batch=FORGET_BATCH):
        """Drop the attempt counts of jobs RQ no longer holds (their result or failure expired), a
        step of a sweep over them at a time: else it would gain a field per job, for ever.
        Returns the ids dropped. Job ids are never reused, so a job gone from RQ never comes back.
        """

        def exist(job_ids):
            with self.conn.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.exists(Job.key_for(job_id))
                return pipe.execute()

        self._forget_cursor, dropped = self.attempts.forget_gone(self._forget_cursor, batch, exist)
        return dropped

    def recover_abandoned(self):
        now = self.clock()
        running, recovered = set(), []
        for queue in self.queues:
            registry = queue.started_job_registry
            members = self.conn.zrange(registry.key, 0, -1)
            entries = [
                e
                for e in registry_ids(self.conn, registry.key, members, composite=True)
                if e[0].startswith(JOB_ID_PREFIX)
            ]
            if not entries:
                continue
            beating = self.beats.alive([job_id for job_id, _ in entries])
            dead = []
            for entry, alive in zip(entries, beating):
                running.add(entry)
                if alive:
                    self._silent_since.pop(entry, None)
                elif now - self._silent_since.setdefault(entry, now) >= self.grace:
                    dead.append(entry)
            if dead:
                recovered += self._recover(queue, registry, dead)
        self._silent_since = {e: t for e, t in self._silent_since.items() if e in running}
        return recovered

    def _recover(self, queue, registry, dead):
        """Report each dead scan, then let RQ's abandoned-job handling retry or fail it."""
        for job_id, execution_id in dead:
            try:
                job = Job.fetch(job_id, connection=self.conn)
            except NoSuchJobError:
                continue
            attempt = self.attempts.get(job_id)
            state = next_state(job)
            worker = job.worker_name or "unknown"
            error = f"worker {worker} {RECOVERY_MARK} during attempt {attempt}"
            if state == FAILED:
                error += "; no retries left (does this file kill its workers?)"
            log.warning("recovering %s from %s: %s", job_id, queue.name, error)
            try:
                files = files_of(job)
            except Refused as exc:  # planted under logjobs' job ids: RQ's clean-up fails it, unread
                warn_once(
                    ("abandoned", job_id),
                    "abandoned job %s in %s is not a logjobs scan (%s): failing it "
                    "without reading it",
                    job_id,
                    queue.name,
                    exc,
                )
                files = []
            done = DoneFiles(self.conn).ended(job_id)
            lost = [
                events.Event(job_id, path, state, attempt, part, worker=worker, error=error)
                for path, part in files
                if path not in done
            ]
            if lost:
                events.emit(self.conn, *lost)
            # Should the attempt come back (a partition healing), its work-horse learns it was given
            # up.
            HandedOn(self.conn).mark(job_id, attempt, worker)
            # Mark the execution expired; RQ's cleanup then retries the job or moves it to failed.
            self.conn.zadd(registry.key, {f"{job_id}:{execution_id}": 1}, xx=True)
            self._silent_since.pop((job_id, execution_id), None)
        registry.cleanup()
        return [job_id for job_id, _ in dead]
