"""Periodic scans with RQ's own scheduler: `rq cron conf/cron.py`
(conf/systemd/logjobs-cron.service).

    RQ_REDIS_URL=redis://HOST:6379/0 rq cron /etc/logjobs/cron.py

Every INTERVAL seconds it enqueues one small job that a worker runs: it pushes the files below each
folder, as `logjobs watch` does when it starts. Files unchanged since their last scan are skipped,
grown ones are scanned from where their last scan ended. Run one `rq cron` per Redis (a second one
would push the same folders twice as often). For folders `logjobs watch` cannot follow (inotify sees
no writes made by other hosts on NFS), or as a safety net beside it.

The folders, interval and priority come from the environment (the unit sets them), or edit below.
The scans follow logjobs' settings as `logjobs push` does (LOGJOBS_CONFIG and LOGJOBS_* here:
allowed roots, retry policy, job timeout, split and batch sizes, analysis).
"""

import os

from rq import cron

from logjobs.defaults import DEFAULT_QUEUE, QUEUES
from logjobs.rqsafe import enqueue_from_rq_cron
from logjobs.settings import Settings
from logjobs.watch import push_paths

# Folders to push, separated by ':'.
FOLDERS = os.environ.get("LOGJOBS_CRON_FOLDERS", "/var/log/app").split(os.pathsep)
# Seconds between pushes; or set CRON to a crontab line ("*/15 * * * *", local time) to use that
# instead.
INTERVAL = int(os.environ.get("LOGJOBS_CRON_INTERVAL", "900"))
CRON = os.environ.get("LOGJOBS_CRON_SCHEDULE") or None
# Queue of the scans, and the patterns to count (separated by ':').
PRIORITY = os.environ.get("LOGJOBS_CRON_PRIORITY", DEFAULT_QUEUE)
PATTERNS = os.environ.get("LOGJOBS_CRON_PATTERNS", "ERROR").split(os.pathsep)
SETTINGS = Settings.load()
# Jobs as logjobs' workers read them (JSON): RQ's cron would pickle them, and the workers refuse
# pickles.
enqueue_from_rq_cron()

# The push job itself takes milliseconds: it goes first in line, whatever the priority of its scans.
# For a node's own logs, enqueue it on the node's queue so that its workers (which see the files)
# run it: cron.register(push_paths, "web1.high", kwargs={..., "node": "web1"}, ...).
cron.register(
    push_paths,
    QUEUES[0],
    kwargs={
        "dirs": FOLDERS,
        "priority": PRIORITY,
        "patterns": PATTERNS,
        "roots": SETTINGS.roots,
        **SETTINGS.push_options(),
    },
    interval=None if CRON else INTERVAL,
    cron=CRON,
    job_timeout=3600,
    name="logjobs-push " + " ".join(FOLDERS),
)
