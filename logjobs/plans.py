"""How the files of a push are grouped into jobs: small files share a job, a big plain file is cut
into byte ranges scanned in parallel. Reads nothing but the files' sizes and first bytes."""

import dataclasses
import os
import stat

from . import scanner
from .defaults import DEFAULT_BATCH_BYTES, DEFAULT_BATCH_FILES, DEFAULT_SPLIT_BYTES, MAX_PARTS
from .exceptions import ScanError


@dataclasses.dataclass(frozen=True)
class FilesJob:
    """A job scanning small files whole (or from where their last scan ended), one after the
    other."""

    paths: list[str]


@dataclasses.dataclass(frozen=True)
class PartJob:
    """A job scanning one byte range of a big plain file: part `part` of `parts`; `end` None: to the
    end, as the file is when it runs. A range owns the lines that start in it."""

    path: str
    start: int
    end: int | None
    part: int
    parts: int


def plan(
    paths,
    split_bytes=DEFAULT_SPLIT_BYTES,
    batch_files=DEFAULT_BATCH_FILES,
    batch_bytes=DEFAULT_BATCH_BYTES,
    max_parts=MAX_PARTS,
    since=None,
) -> list[FilesJob | PartJob]:
    """The jobs that scan `paths`: batches of small files (at most `batch_files` and `batch_bytes`
    each), and each byte range of a big plain file (at most `max_parts`, none under `split_bytes`).

    `since` maps a path to where its scan starts (what was appended to it since its last scan).
    """
    since = since or {}
    jobs: list[FilesJob | PartJob] = []
    batch: list[str] = []
    batch_size = 0
    for path in paths:
        start = since.get(path, 0)
        size = max(0, _regular_size(path) - start)
        if split_bytes and size >= 2 * split_bytes and _splittable(path):
            jobs += _parts(path, start, size, min(max_parts, size // split_bytes))
            continue
        if batch and (len(batch) >= batch_files or batch_size + size > batch_bytes):
            jobs.append(FilesJob(batch))
            batch, batch_size = [], 0
        batch.append(path)
        batch_size += size
    if batch:
        jobs.append(FilesJob(batch))
    return jobs


def _parts(path, start, size, n) -> list[PartJob]:
    """`n` (2 at least) ranges of the `size` bytes from `start` on. The cuts need not fall on line
    ends (a range owns the lines that start in it): no reading here. The last reads to the end."""
    n = max(2, n)
    cuts = [start + size * i // n for i in range(n)] + [None]
    return [PartJob(path, cuts[i], cuts[i + 1], i, n) for i in range(n)]


def _regular_size(path):
    try:
        st = os.stat(path)
    except OSError:
        return 0  # its job reports why
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def _splittable(path):
    try:
        return scanner.compression(path) is None
    except ScanError:
        return False  # scanned whole, its job reports why
