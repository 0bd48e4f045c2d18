"""The seed article's Celery task, the baseline of the many-small-files case (runs in
bench/.venv-celery).

The task is the article's `process_log` (open, `f.read()`, `str.count("ERROR")`), without its
per-task `print` (Celery would log each one), and with Redis as broker (db 0) and result backend (db
1), as the article advises. Worker: `celery -A celery_seed worker --pool prefork --concurrency 2`.

    python celery_seed.py ping          # returns once a worker answers (not timed)
    python celery_seed.py run DIR       # the article's producer: `process_log.delay(path)` for each
                                        # file of DIR, printing each task id; it does not wait
The bench times the run until the result backend holds every result (RESULT_PREFIX keys in db 1).
"""

import os
import sys
import time

from celery import Celery

URL = os.environ["BENCH_REDIS_URL"].rsplit("/", 1)[0]
BROKER_DB, BACKEND_DB = 0, 1
RESULT_PREFIX = "celery-task-meta-"  # the Redis backend's key for a task's result
app = Celery("tasks", broker=f"{URL}/{BROKER_DB}", backend=f"{URL}/{BACKEND_DB}")
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="tasks.process_log")  # the same name run as a module (worker) or as __main__
def process_log(file_path):
    try:
        with open(file_path) as f:
            content = f.read()
        error_count = content.count("ERROR")
        return {"file": file_path, "errors": error_count}
    except Exception as e:
        return {"file": file_path, "error": str(e)}


def ping(timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.control.ping(timeout=0.5):
            return
    sys.exit("no Celery worker answered")


def run(directory):
    for name in sorted(os.listdir(directory)):
        result = process_log.delay(os.path.join(directory, name))
        print(f"Task added for file: {name}, Task ID: {result.id}")
    sys.stdout.flush()
    os._exit(0)  # skip Celery's clean-up of the pending results at exit: it only adds noise


if __name__ == "__main__":
    ping() if sys.argv[1] == "ping" else run(sys.argv[2])
