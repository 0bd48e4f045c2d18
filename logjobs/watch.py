"""Watched folders: push files as they are created, written or moved in, or periodically from `rq
cron`.

A Watcher follows directories with inotify (watchdog's native observer), or by polling where inotify
sees nothing (network filesystems) or cannot start. Events only say which files to push, once each
has been quiet for a while; `push.push` decides what to scan. So a watcher keeps no state of its
own: on start it pushes every file below its folders, and push skips the unchanged ones.
"""

import dataclasses
import fnmatch
import logging
import os
import stat
import threading
import time

from rq import get_current_job
from watchdog import events as fs
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from . import access, push, queues
from .defaults import (
    DEFAULT_PATTERNS,
    DEFAULT_QUEUE,
    DEFAULT_WATCH_DEBOUNCE,
    DEFAULT_WATCH_POLL,
    WATCH_MAX_DELAY_PERIODS,
)
from .exceptions import LogJobsError, PushRefused
from .paths import expand, links_within

log = logging.getLogger(__name__)

#: Names never pushed, nor looked into: hidden files and folders (editors' swap files, rsync's
#: `.name.XXXXXX` while it copies) and temporary files. Matched against each name below a watched
#: folder.
IGNORED_NAMES = (".*", "*~", "*.swp", "*.tmp", "*.part")
#: What the observer reports; watchdog asks inotify for these only (not the opens and reads of
#: scans).
EVENTS = [
    fs.FileCreatedEvent,
    fs.FileModifiedEvent,
    fs.FileClosedEvent,
    fs.FileMovedEvent,
    fs.FileDeletedEvent,
    fs.DirCreatedEvent,
    fs.DirMovedEvent,
    fs.DirDeletedEvent,
]
#: Seconds between pushes while they fail: doubling up to the last.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 10.0)
#: After new folders appear, at most this often (s): check that inotify watches each of them.
WATCHES_CHECK_INTERVAL = 5.0


def ignored(name):
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in IGNORED_NAMES)


def is_file(path):
    """A regular file, or a symlink to one: what a watcher pushes (not folders, FIFOs, devices)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def inotify_watches():
    """How many inotify watches this process holds (Linux's /proc/self/fdinfo), or None where
    unknown."""
    try:
        fds = os.listdir("/proc/self/fdinfo")
    except OSError:
        return None
    held = 0
    for fd in fds:
        try:
            with open(f"/proc/self/fdinfo/{fd}") as info:
                held += sum(line.startswith("inotify wd:") for line in info)
        except OSError:
            pass  # closed meanwhile (e.g. the listing's own)
    return held


def folders(dirs):
    """The folders below `dirs` that inotify needs a watch for: readable ones, symlinked ones not
    followed."""
    found = set(dirs)
    for top in dirs:
        for root, subdirs, _ in os.walk(top):
            found.update(
                path
                for path in (os.path.join(root, d) for d in subdirs)
                if not os.path.islink(path) and os.access(path, os.R_OK)
            )
    return found


def check_dirs(dirs):
    """Absolute paths of `dirs`; PushRefused unless each is a directory."""
    for path in dirs:
        if not os.path.isdir(path):
            raise PushRefused(
                f"cannot watch {path}: not a directory"
                if os.path.lexists(path)
                else f"cannot watch {path}: no such directory"
            )
    return [os.path.abspath(path) for path in dirs]


def files_below(dirs):
    """Every file below `dirs` that a watcher pushes, in path order (symlinked folders not
    followed)."""

    def unreadable(err):
        log.warning(
            "cannot read directory %s: %s; its files are not pushed", err.filename, err.strerror
        )

    for top in dirs:
        real = os.path.realpath(top)
        for root, subdirs, names in os.walk(top, onerror=unreadable):
            subdirs[:] = sorted(d for d in subdirs if not ignored(d))
            for name in sorted(names):
                path = os.path.join(root, name)
                if not ignored(name) and is_file(path) and not links_within(path, real):
                    yield path


def acceptable(paths, roots=()):
    """The paths `paths.expand` accepts, one by one: a refused name is logged and left out, not the
    batch."""
    accepted = []
    for path in paths:
        try:
            accepted += expand([path], roots=roots)
        except PushRefused as exc:
            log.warning("not pushing %s", exc)
    return accepted


def push_paths(
    dirs, priority=DEFAULT_QUEUE, patterns=DEFAULT_PATTERNS, node=None, roots=(), **options
):
    """RQ job for `rq cron` (conf/cron.py): push the files below `dirs` (those within `roots`, when
    given, and within the roots of the worker running it, whatever the job says), as a watcher does
    when it starts. `options` go to `push.push` (retry_max, retry_intervals, timeout, split_bytes,
    batch_files, analyse): conf/cron.py passes logjobs' settings.

    Returns what it did, as RQ's job result: {"queue", "files", "jobs", "skipped", "unchanged"}.
    """
    queue = queues.queue_name(priority, node)
    files = acceptable(
        acceptable(files_below(check_dirs(dirs)), roots), access.worker_roots().paths
    )
    pushed = push.push(
        get_current_job().connection, files, queue=queue, patterns=patterns, **options
    )
    return {
        "queue": queue,
        "files": len(pushed.files),
        "jobs": len(pushed.job_ids),
        "skipped": len(pushed.skipped),
        "unchanged": len(pushed.unchanged),
    }


@dataclasses.dataclass
class _Pending:
    """A changed file waiting to be pushed: when it first and last changed, and not before when."""

    first: float
    last: float
    after: float = float("-inf")


class Watcher:
    """Push the files below `dirs` as they change, in batches, each once it has been quiet for
    `debounce` seconds, or at least every WATCH_MAX_DELAY_PERIODS periods while it keeps changing.

    `push(paths)` does the pushing (`push.push` with the queue and settings bound) and returns its
    `Pushed`. With `poll` (seconds) the folders are polled instead of watched with inotify.
    """

    def __init__(
        self, dirs, push, roots=(), debounce=DEFAULT_WATCH_DEBOUNCE, poll=None, clock=time.monotonic
    ):
        self.dirs = check_dirs(dirs)
        self.push = push
        self.roots = roots
        self.debounce = debounce
        self.poll = poll
        self.clock = clock
        self.max_delay = WATCH_MAX_DELAY_PERIODS * debounce
        self.tick = min(max(debounce / 4, 0.02), 0.25)
        self.pending = {}
        self.lock = threading.Lock()
        self.observer = None
        self.failures = 0
        self.retry_at = float("-inf")
        self.new_folders, self.watches_checked = False, float("-inf")

    @property
    def method(self):
        return "inotify" if self.poll is None else f"polling every {self.poll:g} s"

    def start(self):
        """Watch, then push every file already there (push skips the ones it has scanned as they
        are)."""
        self.observer = self._observe()
        self._add_tree(self.dirs)
        if self.poll is None and self._short_of_watches():
            self._poll_instead("out of inotify watches")

    def stop(self):
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(10)

    def run(self, stop, on_push=None):
        """Push what is due every tick until `stop` (a threading.Event) is set; `on_push(pushed)`
        after each push."""
        if self.observer is None:
            self.start()
        try:
            while True:
                self._check_observer()
                pushed = self.flush()
                if pushed is not None and on_push is not None:
                    on_push(pushed)
                if stop.wait(self.tick):
                    return
        finally:
            self.stop()

    def flush(self):
        """Push the files that are due, as one batch; their Pushed, or None (nothing due, or it
        failed)."""
        now = self.clock()
        if now < self.retry_at:
            return None
        with self.lock:
            due = {
                path: p.last
                for path, p in self.pending.items()
                if now >= p.after
                and (now - p.last >= self.debounce or now - p.first >= self.max_delay)
            }
            # Gone, or no longer a file, since the event: nothing to push (a deleted file is no
            # error).
            for path in [path for path in due if not is_file(path)]:
                del self.pending[path], due[path]
        if not due:
            return None
        paths = acceptable(due, self.roots)
        if not paths:
            self._forget(due)
            return None
        try:
            pushed = self.push(paths)
        except Exception as exc:
            delay = RETRY_DELAYS[min(self.failures, len(RETRY_DELAYS) - 1)]
            self.failures += 1
            self.retry_at = now + delay
            log.warning(
                "push of %d file(s) failed, retrying in %.0f s: %s: %s",
                len(paths),
                delay,
                type(exc).__name__,
                exc,
            )
            log.debug("traceback", exc_info=True)
            return None
        self.failures = 0
        with self.lock:
            for path, last in due.items():
                p = self.pending.get(path)
                if p is None:
                    continue
                if p.last != last:
                    p.first = now  # changed while being pushed: due again after its own debounce
                elif path in pushed.skipped:
                    # Its previous scan is still queued or running: try again later, or this change
                    # would be missed once that scan is done.
                    p.first = p.last = float("-inf")
                    p.after = now + self.max_delay
                else:
                    del self.pending[path]
        return pushed

    def changed(self, path):
        if self._ignored(path):
            return
        now = self.clock()
        with self.lock:
            p = self.pending.get(path)
            if p is None:
                self.pending[path] = _Pending(now, now)
            else:
                p.last = now

    def _forget(self, paths):
        with self.lock:
            for path in paths:
                self.pending.pop(path, None)

    def gone(self, path):
        """Forget a deleted or moved-away file, or everything below a folder; not a file there again
        (rotation: polling reports the new `app.log` before the move of the old one to `app.log.1`).
        """
        below = path + os.sep
        with self.lock:
            for known in [
                k for k in self.pending if (k == path or k.startswith(below)) and not is_file(k)
            ]:
                del self.pending[known]

    def _add_tree(self, dirs):
        """Make every file below `dirs` due now (at start, and for folders created or moved in)."""
        files = list(files_below(d for d in dirs if not self._ignored(d)))
        with self.lock:
            for path in files:
                self.pending[path] = _Pending(float("-inf"), float("-inf"))

    def _ignored(self, path):
        for top in self.dirs:
            if path.startswith(top + os.sep):
                return any(
                    ignored(name) for name in os.path.relpath(path, top).split(os.sep)
                ) or links_within(path, os.path.realpath(top))  # see files_below
        return path not in self.dirs

    def _observe(self):
        if self.poll is None:
            try:
                return self._start(Observer())
            except OSError as exc:
                self._fall_back(exc)
        return self._start(PollingObserver(timeout=self.poll))

    def _fall_back(self, reason):
        self.poll = DEFAULT_WATCH_POLL
        log.warning(
            "inotify cannot watch %s (%s); polling every %g s instead (more watches: raise "
            "fs.inotify.max_user_watches, or pass --poll)",
            " ".join(self.dirs),
            reason,
            self.poll,
        )

    def _poll_instead(self, reason):
        """Switch to polling, and push everything (what changed while unwatched, push finds)."""
        self.stop()
        if self.poll is None:
            self._fall_back(reason)
        self.observer = self._start(PollingObserver(timeout=self.poll))
        self._add_tree(self.dirs)

    def _short_of_watches(self):
        """True when some folder has no inotify watch: watchdog skips a subfolder whose watch the
        kernel refused (e.g. fs.inotify.max_user_watches reached) without a word, and its files
        would go unseen."""
        for attempt in range(2):
            held = inotify_watches()
            if held is None or held >= len(folders(self.dirs)):
                return False
            if not attempt:
                time.sleep(0.5)  # a folder just created may be getting its watch
        return True

    def _start(self, observer):
        handler = _Handler(self)
        try:
            for path in self.dirs:
                observer.schedule(handler, path, recursive=True, event_filter=EVENTS)
            observer.start()
        except BaseException:
            observer.stop()
            raise
        return observer

    def _check_observer(self):
        """Stop when a watched folder is gone; poll instead when inotify stopped, or lacks watches
        for new folders."""
        dead = [e.watch.path for e in self.observer.emitters if not e.is_alive()]
        if dead or not self.observer.is_alive():
            missing = [path for path in self.dirs if not os.path.isdir(path)]
            if missing:
                raise LogJobsError(
                    f"watched folder {' '.join(missing)} is gone; "
                    "start `logjobs watch` again once it is back"
                )
            self._poll_instead(f"watching {' '.join(map(str, dead)) or 'a folder'} stopped")
        elif (
            self.poll is None
            and self.new_folders
            and self.clock() - self.watches_checked >= WATCHES_CHECK_INTERVAL
        ):
            self.new_folders, self.watches_checked = False, self.clock()
            if self._short_of_watches():
                self._poll_instead("out of inotify watches for new folders")


class _Handler(fs.FileSystemEventHandler):
    """Turns watchdog's events (on its own thread) into the watcher's pending files."""

    def __init__(self, watcher):
        self.watcher = watcher

    def on_created(self, event):
        if event.is_directory:
            self.watcher.new_folders = True
            self.watcher._add_tree([event.src_path])  # files may be there before its watch is
        else:
            self.watcher.changed(event.src_path)

    def on_modified(self, event):
        if not event.is_directory:
            self.watcher.changed(event.src_path)

    on_closed = on_modified

    def on_moved(self, event):
        self.watcher.gone(event.src_path)
        self.on_created(
            fs.DirCreatedEvent(event.dest_path)
            if event.is_directory
            else fs.FileCreatedEvent(event.dest_path)
        )

    def on_deleted(self, event):
        self.watcher.gone(event.src_path)
