"""Settings module for `rq worker -c rq_settings` (or RQ_CONFIG=rq_settings), if you prefer it to a
URL.

    rq worker -c rq_settings high default low

`-c` takes a module name, imported from the current directory (or PYTHONPATH): run it from this
folder, or copy the file where the worker runs. A path (`-c conf/rq_settings.py`) does not work.

Plain `RQ_REDIS_URL=redis://HOST:6379/0 rq worker high default low` needs no file at all.
"""

# The Redis every worker, `logjobs push` and `logjobs mirror` share.
REDIS_URL = "redis://127.0.0.1:6379/0"

# Queue order is priority order: `low` waits while `high` has jobs.
QUEUES = ["high", "default", "low"]

# With Redis Sentinel (see docs/operations.md), name the master and list the sentinels instead of
# REDIS_URL; RQ connects to whichever server is master now.
# SENTINEL = {
#     "INSTANCES": [("sentinel-1", 26379), ("sentinel-2", 26379), ("sentinel-3", 26379)],
#     "MASTER_NAME": "logjobs",
#     "DB": 0,
#     "SOCKET_TIMEOUT": 5,
# }
