"""Every default, name and Redis key logjobs uses, in one place.

Workers are plain `rq worker` processes that read little logjobs configuration (their own roots), so
whatever they must agree on with `push` and `mirror` (key names, the heartbeat period) is a constant
here.
"""

import enum
from typing import Final

#: Queue names in priority order: `rq worker high default low` drains them in this order.
QUEUES = ("high", "default", "low")
DEFAULT_QUEUE = "default"

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DB = "./logjobs.db"
DEFAULT_PATTERNS = ("ERROR",)
#: Normalised log levels, least severe first (see analysis).
LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")

#: Retry policy for errors that can heal: RQ's Retry(max, interval) with growing intervals (s).
DEFAULT_RETRY_MAX = 3
DEFAULT_RETRY_INTERVALS = (10, 30, 60)
#: RQ job timeout (s): a scan that runs longer is killed and retried.
DEFAULT_JOB_TIMEOUT = 3600
#: Bounds of the settings: beyond them a value is a mistake (RQ's timer takes no more than 30 days,
#: say).
MAX_RETRIES = 100
MAX_RETRY_INTERVAL = 7 * 24 * 3600
MAX_JOB_TIMEOUT = 30 * 24 * 3600
MAX_SPLIT_BYTES = 1 << 40
MAX_BATCH_FILES = 100_000
#: How long RQ keeps a finished job's result, and a failed job (s). The database keeps them for
#: good.
DEFAULT_RESULT_TTL = 7 * 24 * 3600
DEFAULT_FAILURE_TTL = 30 * 24 * 3600
#: Files enqueued per Redis transaction by `push`.
DEFAULT_PUSH_BATCH = 1000
#: Small files share a job, up to this many files and bytes (and spread over the workers): a
#: work-horse per job costs tens of milliseconds.
DEFAULT_BATCH_FILES = 500
DEFAULT_BATCH_BYTES = 64 << 20
#: A plain file of twice this size or more is split into ranges of about this size, scanned in
#: parallel (0: never split).
DEFAULT_SPLIT_BYTES = 64 << 20
MAX_PARTS = 64

#: A running scan refreshes its heartbeat key this often (s); the key lives DEFAULT_BEAT_TTL.
DEFAULT_BEAT_INTERVAL = 2
DEFAULT_BEAT_TTL = 10
#: The keeper declares a scan abandoned once its heartbeat has been gone this long (s).
DEFAULT_ABANDON_GRACE = 5
#: How often the mirror's loop runs the keeper and reconciles with RQ (s).
DEFAULT_KEEPER_INTERVAL = 1.0
DEFAULT_RECONCILE_INTERVAL = 5.0
#: Stream entries the mirror applies per database transaction at most (fewer when they are large:
#: see mirror.STEP_BYTES); and unfinished parts it checks with RQ per round trip.
DEFAULT_MIRROR_BATCH = 500

#: `logjobs watch`: a changed file is pushed once quiet this long (s), and a file written without a
#: pause at least every WATCH_MAX_DELAY_PERIODS debounce periods; the polling interval (s) when
#: inotify cannot watch (network filesystems, or the kernel's watch limit reached).
DEFAULT_WATCH_DEBOUNCE = 1.0
WATCH_MAX_DELAY_PERIODS = 5
DEFAULT_WATCH_POLL = 5.0

DEFAULT_DASHBOARD_HOST = "127.0.0.1"
DEFAULT_DASHBOARD_PORT = 9181
#: Characters of the dashboard's API token, at least and at most.
MIN_API_TOKEN = 16
MAX_API_TOKEN = 4096

#: In the reason the keeper gives a recovered scan; the dashboard counts recoveries by it.
RECOVERY_MARK = "died or was cut off"


class State(enum.StrEnum):
    """A file's (or a part's) state: RQ's names for a job's, plus the ones logjobs adds."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"  # a retry waiting its interval
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    # the row of a name whose file was renamed or compressed away: its counts went with it
    MOVED = "moved"
    CANCELED = "canceled"  # taken back by `logjobs cancel` before it finished


QUEUED, SCHEDULED, STARTED, FINISHED, FAILED, MOVED, CANCELED = State
STATES = tuple(State)
FINAL_STATES = (FINISHED, FAILED, CANCELED)
#: Not a state: an event that has the mirror drop a file's row and history (`logjobs forget`).
FORGOTTEN: Final = "forgotten"

# Redis keys. Everything logjobs writes beside RQ's own keys starts with KEY_PREFIX.
KEY_PREFIX = "logjobs:"
EVENTS_KEY = KEY_PREFIX + "events"  # stream of state changes, read by the mirror
EVENTS_GROUP = "mirror"  # its consumer group
ATTEMPTS_KEY = KEY_PREFIX + "attempts"  # hash: job id -> runs started
FILES_KEY = KEY_PREFIX + "files"  # hash: absolute path -> ids of its latest scan's jobs
PUSHED_KEY = KEY_PREFIX + "pushed:"  # + token: marks a push transaction that ran (an hour)
BEAT_KEY = KEY_PREFIX + "beat:"  # + job id: string with a short TTL while a scan runs
HANDED_ON_KEY = (
    KEY_PREFIX + "handed-on:"
)  # + "job id:attempt": the keeper gave the attempt up (a day)
DONE_KEY = KEY_PREFIX + "done:"  # + job id: hash, path -> JSON result or permanent error
CANCELED_KEY = KEY_PREFIX + "canceled:"  # + job id: set of the paths `cancel` took back
ORPHANS_KEY = KEY_PREFIX + "orphans"  # hash: job id -> when first seen queued in no queue
MIRROR_LOCK_KEY = KEY_PREFIX + "mirror-lock"  # held by the mirror applying a batch
MIRROR_ALIVE_KEY = (
    KEY_PREFIX + "mirror-alive"
)  # set by a running mirror after each cycle, short TTL
# What was counted of each file, written by the mirror once a scan's result is in the database, read
# by push to scan only what is new (see tracking).
SCANNED_KEY = KEY_PREFIX + "scanned"  # hash: absolute path -> JSON record of its last scan
INODES_KEY = KEY_PREFIX + "inodes"  # hash: "dev:ino" -> path whose record has that file
HEADS_KEY = KEY_PREFIX + "heads"  # hash: "length:hash" of a file's head -> path, likewise
JOB_ID_PREFIX = "lj-"
#: The functions a job may name (see rqsafe): a worker refuses any other.
JOB_FUNCTIONS = frozenset({"logjobs.jobs.scan", "logjobs.watch.push_paths"})
