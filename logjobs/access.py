"""Where scans may read: the allowed roots, checked where each file is opened.

A job names a path; whoever can write to Redis can name any. So a worker takes its roots from its
own host's settings (LOGJOBS_ROOTS, or `roots` in LOGJOBS_CONFIG), never from the job, and checks
the file it actually opened, not only the name it was given: the name is resolved, the resolved
path checked, opened without following a last symlink (O_NOFOLLOW), and what was opened is looked
up again (/proc/self/fd). A symlink swapped in between, anywhere on the path, is refused.

The kernel's pseudo-filesystems (/proc, /sys, /dev) hold no logs, and some of their files block a
reader or show secrets (/proc/kmsg, /proc/self/environ): they are refused unless a root names them.
Pure: no Redis, RQ or Peewee.
"""

import dataclasses
import functools
import logging
import os

from .exceptions import LogJobsError, ScanError

log = logging.getLogger(__name__)

#: Refused unless a root lies within one of them.
KERNEL_FILESYSTEMS = ("/proc", "/sys", "/dev")
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def within(path: str, root: str) -> bool:
    """Is `path` `root` or below it (both absolute and normalised)?"""
    return path == root or path.startswith(root.rstrip("/") + "/")


@dataclasses.dataclass(frozen=True)
class Roots:
    """The folders scans may read below (real paths); none: anywhere but the kernel's
    pseudo-filesystems."""

    paths: tuple[str, ...] = ()

    @classmethod
    def of(cls, roots) -> "Roots":
        """Roots from folder names as a user writes them (resolved, so a symlinked root is its
        target)."""
        return cls(tuple(os.path.realpath(os.path.abspath(os.path.expanduser(r))) for r in roots))

    def __str__(self):
        return (
            os.pathsep.join(self.paths)
            if self.paths
            else "anywhere but " + ", ".join(KERNEL_FILESYSTEMS)
        )

    def allows(self, real: str) -> bool:
        """May a file whose real path is `real` be read?"""
        if self.paths:
            return any(within(real, root) for root in self.paths)
        return not any(within(real, kernel) for kernel in KERNEL_FILESYSTEMS)

    def refusal(self, shown: str) -> ScanError:
        where = f"the allowed roots ({self})" if self.paths else f"what may be read ({self})"
        return ScanError(f"{shown}: outside {where}; refused", permanent=True)

    def open(self, path: str, shown: str) -> int:
        """A descriptor of the file at `path`, opened for reading without blocking (O_NONBLOCK), if
        it lies within the roots; ScanError (permanent) if it does not, OSError if it cannot be
        opened."""
        real = os.path.realpath(path)
        if not self.allows(real):
            raise self.refusal(shown)
        fd = os.open(real, _OPEN_FLAGS)
        # A folder on the path replaced by a symlink since `real` was resolved leads elsewhere.
        opened = _opened(fd)
        if opened is not None and opened != real and not self.allows(opened):
            os.close(fd)
            raise self.refusal(shown)
        return fd


ANYWHERE = Roots()


def _opened(fd: int) -> str | None:
    """The path the kernel says `fd` was opened at, or None where it cannot say (no /proc)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


@functools.cache
def worker_settings():
    """This host's own settings (read once per process; a work-horse inherits them). LogJobsError if
    they cannot be read: better no scan than one outside the roots meant."""
    from .settings import Settings

    return Settings.load()


def worker_roots() -> Roots:
    """This host's roots (see worker_settings)."""
    return Roots.of(worker_settings().roots)


def worker_access() -> Roots:
    """worker_roots(), or a ScanError worth retrying (on another worker) when this host's settings
    are broken."""
    try:
        return worker_roots()
    except LogJobsError as exc:
        raise ScanError(
            f"this worker's settings cannot be read, so it scans nothing: {exc}", permanent=False
        ) from None


def describe_worker_access(warn=log.warning) -> str:
    """A worker's start line about where it reads (`warn` says it when no roots are set, or its
    settings are broken)."""
    try:
        roots = worker_roots()
    except LogJobsError as exc:
        warn(
            "logjobs: this host's settings cannot be read (%s): every scan will fail until they "
            "can",
            exc,
        )
        return "settings unreadable"
    if not roots.paths:
        warn(
            "logjobs: no allowed roots on this host (set LOGJOBS_ROOTS, or roots in "
            "LOGJOBS_CONFIG): scans read any file this user can read, but %s",
            ", ".join(KERNEL_FILESYSTEMS),
        )
        return f"reads {roots}"
    return f"reads files below {roots} only"
