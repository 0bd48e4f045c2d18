"""Which files a push names: files, directories (recursive), globs, or paths read from stdin, each
file once, refused as a whole when an argument names nothing or a path lies outside the roots."""

import errno
import glob
import os
import stat

from . import scanner
from .access import Roots, within
from .exceptions import PushRefused

STDIN = "-"


def expand(args, roots=(), stdin=None):
    """Absolute paths of the files named by `args` (files, directories, globs, or '-' for stdin),
    each file once: under the first of its names (a link, a hard link, a path through a symlinked
    folder).

    Refuses (PushRefused) when an argument names nothing, a directory cannot be read, or a path
    lies outside `roots`; anything else that is wrong with a file is left for its job to report.
    """
    paths = {}
    for arg in args:
        if arg == STDIN:
            if stdin is None:
                raise PushRefused("'-' given, but there is no standard input to read paths from")
            for line in stdin:
                line = line.rstrip("\n")
                if line:
                    _add(paths, _existing(line, arg_kind="path from stdin"))
        elif os.path.lexists(arg):
            _add(paths, arg)
        elif glob.has_magic(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                raise PushRefused(f"no file matches {arg!r}")
            for match in matches:
                _add(paths, match)
        else:
            _existing(arg)
    files = _once_each(paths)
    allowed = Roots.of(roots)
    for path in files:
        _check_name(path)
        _check_root(path, allowed)
    return files


def _once_each(paths):
    """The paths, but for later names of a file already listed (its job would count it twice)."""
    seen, kept = set(), []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            kept.append(path)  # its job says what is wrong with it
            continue
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            kept.append(path)
    return kept


def _existing(path, arg_kind="path"):
    if "\0" in path:
        raise PushRefused(
            f"a {arg_kind} holds a NUL byte, which no file name can: {scanner.printable(path)}; "
            "nothing was enqueued"
        )
    try:
        os.lstat(path)
    except (
        OSError
    ) as e:  # not only ENOENT: a path too long, a folder on it that may not be searched...
        reason = (
            "no such file or directory"
            if e.errno == errno.ENOENT
            else (e.strerror or str(e)).lower()
        )
        raise PushRefused(
            f"{reason}: {scanner.printable(path)} ({arg_kind}); nothing was enqueued"
        ) from None
    return path


def _add(paths, path):
    """Add a file, or every file below a directory (not following symlinked directories)."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        paths[path] = None
        return

    def refuse(err):
        raise PushRefused(
            f"cannot read directory {scanner.printable(err.filename)}: {err.strerror}; nothing was "
            "enqueued"
        )

    real = os.path.realpath(path)
    for top, dirs, names in os.walk(path, onerror=refuse):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(top, name)
            if not links_within(full, real):
                paths[full] = None
        # os.walk lists symlinks to directories among `dirs` but does not descend into them.
        for name in dirs:
            full = os.path.join(top, name)
            if os.path.islink(full):
                paths[full] = None


def _check_name(path):
    # RQ's workers keep job descriptions and arguments as UTF-8, and so does the status database.
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise PushRefused(
            f"file name is not valid UTF-8: {repr(os.fsencode(path))[2:-1]}; rename it "
            "(nothing was enqueued)"
        ) from None


def _check_root(path, roots):
    if not roots.allows(os.path.realpath(path)):
        raise PushRefused(
            f"{scanner.printable(path)} is outside "
            f"{'the allowed roots' if roots.paths else 'what may be read'}"
            f" ({roots}); nothing was enqueued"
        )


def links_within(path, root):
    """Is `path` a symlink to a file below `root` (a real path)? A folder's files leave such links
    out: their file is pushed under its own name, and under both its lines would count twice (or,
    the inode seen under a new name, the file would be taken for moved there: `current.log ->
    app.log`)."""
    return os.path.islink(path) and os.path.isfile(path) and within(os.path.realpath(path), root)
