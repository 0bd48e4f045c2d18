"""What a push must scan of each file, given the record of what was counted of it before.

A file is known by its device and inode and by a hash of its first bytes (uncompressed), not by its
name: pushed again, a grown file is scanned from where its last scan ended; an unchanged one is not
scanned at all; a truncated or replaced one is scanned from the start. A file found under a new name
(renamed by log rotation, or compressed after it) continues the record of the name it had, whose row
then says where it went, so its lines are never counted twice.

Pure: the records (wire.Record) come from Redis (the mirror writes them once a scan's result is in
the database), and `decide` only compares them with the files.
"""

import dataclasses
import enum
import hashlib

from . import scanner, wire
from .access import ANYWHERE, Roots
from .exceptions import ScanError

#: Bytes of a file's head its fingerprint covers (fewer in a shorter file).
HEAD_BYTES = 1024


class Action(enum.StrEnum):
    """What a push does with a file."""

    FULL = "full"  # scan it all: new, changed in place, truncated, replaced, or forced
    APPEND = "append"  # scan what was appended since `since`
    UNCHANGED = "unchanged"  # nothing to scan
    MOVED = "moved"  # the file of another record, under a new name: continue that record


FULL, APPEND, UNCHANGED, MOVED = Action


def fingerprint(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def inode_key(identity: wire.Identity) -> str:
    """The field of the inode index that finds a file by its inode (of an Identity, or of a Record,
    which holds one)."""
    return f"{identity.dev}:{identity.ino}"


def head_key(identity: wire.Identity) -> str:
    """The field of the head index that finds a file by its head (see inode_key)."""
    return f"{identity.head_len}:{identity.head}"


class Identity(wire.Identity, frozen=True):
    """What tells a file apart whatever its name: where it lives, its size and time, and its
    head."""

    @classmethod
    def of(cls, path, roots: Roots = ANYWHERE) -> "Identity | None":
        """The identity of the regular file at `path`, or None when it cannot be read (its job says
        why)."""
        try:
            st, compression, data = scanner.peek(path, HEAD_BYTES, roots)
        except (OSError, ScanError):
            return None  # not a regular file, or unreadable
        return cls(
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            compression,  # type: ignore[arg-type]  # one of scanner's names, or None
            len(data),
            fingerprint(data),
        )

    @property
    def inode_key(self) -> str:
        return inode_key(self)

    @property
    def head_key(self) -> str:
        return head_key(self)

    def to_dict(self) -> dict:
        return wire.plain(self)


def record_of(ident: wire.Identity, **scan) -> wire.Record:
    """The record of a finished scan of the file `ident`: where it ended (`end`), of which job, with
    what."""
    return wire.Record(**{name: getattr(ident, name) for name in IDENTITY_FIELDS}, **scan)


IDENTITY_FIELDS = wire.Identity.__struct_fields__


@dataclasses.dataclass
class Decision:
    """What to scan of a file: from `since` on, continuing the scan `base` (a job id), or
    nothing."""

    action: Action
    reason: str
    since: int = 0
    base: str | None = None
    moved_from: str | None = None
    record: wire.Record | None = (
        None  # the record continued (its counts are the base of this scan's)
    )
    scan: bool = True  # False: nothing to read (unchanged, or only renamed)

    @property
    def resume(self) -> wire.Resume:
        """Where a job continuing the record starts, and the head it expects there."""
        assert self.record is not None, "only a decision continuing a record resumes"
        return wire.Resume(self.since, self.record.head_len, self.record.head)


def holds(path, ident, record):
    """Does the file `ident` at `path` still begin with the content `record` counted?"""
    if record.head_len > ident.head_len:
        return False
    if record.head_len == ident.head_len:
        return record.head == ident.head
    try:
        return fingerprint(scanner.head(path, record.head_len)) == record.head
    except ScanError:
        return False


def decide(
    path, ident, record, patterns, candidate=None, force=False, analyse=True, ignore_case=False
):
    """The Decision for `path` now `ident`, whose last counted scan left `record` (or None).

    `candidate` is (old path, its record) for a file this one may have been before a rename or
    compression: a record with this file's inode, or with its head. A scan continues another only
    if it counts the same patterns, and analyses the lines (or not) alike.
    """
    if force:
        return Decision(FULL, "forced")
    alike = (list(patterns), analyse, ignore_case)
    if record is not None and _alike(record, *alike) and _same_file(path, ident, record):
        return _continued(path, ident, record, None)
    if candidate is not None:
        old_path, old = candidate
        if _alike(old, *alike) and _moved(path, ident, old_path, old):
            return _continued(path, ident, old, old_path)
    if record is None:
        return Decision(FULL, "new")
    if record.patterns != list(patterns):
        return Decision(FULL, "other patterns than its last scan")
    if record.analysed != analyse:
        return Decision(FULL, ("analysed" if analyse else "counts only") + ", unlike its last scan")
    if record.ignore_case != ignore_case:
        return Decision(
            FULL, "case " + ("ignored" if ignore_case else "heeded") + ", unlike its last scan"
        )
    return Decision(FULL, "truncated or replaced since its last scan")


def _alike(record, patterns, analyse, ignore_case):
    return (record.patterns, record.analysed, record.ignore_case) == (
        patterns,
        analyse,
        ignore_case,
    )


def _same_file(path, ident, record):
    return (record.dev, record.ino) == (ident.dev, ident.ino) and holds(path, ident, record)


def _moved(path, ident, old_path, old):
    """Is `ident` the file `old` recorded at `old_path`, now under another name?"""
    if old_path == path:
        return False
    if (old.dev, old.ino) == (ident.dev, ident.ino):
        return holds(path, ident, old)
    # A copy (compressed, or copy-then-truncate rotation): the head alone tells, when it is a whole
    # HEAD_BYTES (small files alike in all their bytes are not one file), and only once the old
    # name no longer holds that content, so that two live files never share a record.
    if old.head_len < HEAD_BYTES or not holds(path, ident, old):
        return False
    now = Identity.of(old_path)
    return now is None or not _holds_all(old_path, now, old)


def _holds_all(path, ident, record):
    """Does the file `ident` at `path` still hold everything `record` counted? A compressed file's
    size says nothing of its content's length (`end`): one still there, still beginning alike, holds
    it."""
    return _same_file(path, ident, record) and (
        ident.compression is not None or ident.size >= record.end
    )


def _continued(path, ident, record, moved_from):
    """Continue `record`: nothing new, what was appended, or (when that cannot be told)
    everything."""
    untouched = (ident.dev, ident.ino, ident.size, ident.mtime_ns) == (
        record.dev,
        record.ino,
        record.size,
        record.mtime_ns,
    )
    # A plain file is read to its end: one that grew while it was scanned ends where its scan did,
    # though its size and mtime are no longer those its push saw (and recorded).
    if ident.size == record.end if ident.compression is None else untouched:
        if moved_from is None:
            return Decision(UNCHANGED, "unchanged since its last scan", record=record, scan=False)
        return Decision(
            MOVED,
            f"moved from {moved_from}",
            since=record.end,
            base=record.job_id,
            moved_from=moved_from,
            record=record,
            scan=False,
        )
    since = record.end
    if record.tail:
        if not record.partial or ident.compression is not None:
            return Decision(FULL, "its last line was still being written at its last scan")
        since -= record.partial  # from that line on, which its scan counted apart
    if ident.compression is None and ident.size < record.end:
        return Decision(FULL, "truncated since its last scan")
    if ident.compression is not None and moved_from is None:
        # Rewritten in place: its stream is not known to begin with what was counted.
        return Decision(FULL, f"{ident.compression} file changed since its last scan")
    how = f"moved from {moved_from}" if moved_from else "grew since its last scan"
    if since < record.end:
        how += ", from its last line, which had no newline"
    return Decision(
        MOVED if moved_from else APPEND,
        how,
        since=since,
        base=record.job_id,
        moved_from=moved_from,
        record=record,
    )
