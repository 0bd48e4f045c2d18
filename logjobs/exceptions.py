"""Errors that logjobs raises: one base class, messages that name the problem and the fix."""


def one_line(text: str) -> str:
    """Text (an error's, say) for a one-line message or log line: each run of blanks and newlines as
    one space."""
    return " ".join(text.split())


class LogJobsError(Exception):
    """Base class of every error logjobs raises on purpose."""


class ConfigError(LogJobsError):
    """A setting is missing or malformed."""


class ConnectionFailed(LogJobsError):
    """Redis (or the status database) could not be reached."""


class NoDatabase(LogJobsError):
    """The status database does not exist yet, or has no tables: no mirror has run against it."""


class PushRefused(LogJobsError):
    """`push` refused its input; nothing was enqueued."""


class PushCut(LogJobsError):
    """Redis was lost during a push, after some of its batches were in (each batch is whole)."""

    def __init__(self, enqueued, total, cause):
        super().__init__(
            f"after enqueuing {enqueued} of {total} file(s), in whole batches (push the same paths "
            f"again: what is in is skipped): {cause}"
        )


class ScanError(LogJobsError):
    """A file could not be scanned.

    `permanent` errors (missing, not a regular file, corrupt archive) cannot heal, so the job
    fails at once; the others (I/O errors) are worth retrying.
    """

    def __init__(self, message, *, permanent):
        super().__init__(message)
        self.permanent = permanent
