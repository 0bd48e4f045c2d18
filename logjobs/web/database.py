"""The status database as the web app reads it: opened on first use, one connection per request
thread.

Opened lazily so the dashboard can start before the mirror has created the database.
"""

import logging
import threading

from flask import current_app
from peewee import PeeweeException

from ..exceptions import LogJobsError, NoDatabase
from ..models import database_reason, open_database, require_file
from ..settings import redact_url

log = logging.getLogger(__name__)


class StatusDatabase:
    def __init__(self, target):
        self.target = target
        self.database = None
        self._lock = threading.Lock()

    def connect(self):
        """This thread's connection, binding the models on first use; NoDatabase if there is
        none."""
        if self.database is None:
            with self._lock:
                if self.database is None:
                    self.database = open_database(self.target, create=False)
                    return self.database
        require_file(
            self.target
        )  # before every connection: the file may have been deleted meanwhile
        self.database.connect(reuse_if_open=True)
        return self.database

    def close(self):
        if self.database is not None and not self.database.is_closed():
            self.database.close()


def serve_from_database(blueprint):
    """Give each request of `blueprint` a database connection, and turn database trouble into a
    503."""
    blueprint.before_request(_connect)
    blueprint.teardown_request(lambda exc: _status().close())
    blueprint.register_error_handler(LogJobsError, _unavailable)
    blueprint.register_error_handler(PeeweeException, _unavailable)


def _status():
    return current_app.extensions["logjobs"].status


def _connect():
    _status().connect()


def _unavailable(exc):
    target = _status().target
    message = database_reason(
        exc, target
    )  # a database URL may carry a password, and messages may quote it
    level = logging.DEBUG if isinstance(exc, NoDatabase) else logging.WARNING
    log.log(level, "status database %s: %s: %s", redact_url(target), type(exc).__name__, message)
    if not isinstance(exc, LogJobsError):
        message = f"the status database failed: {type(exc).__name__}: {message}"
    return f"{message}\n", 503, {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "5"}
