"""Count the lines of a log file that contain literal patterns, exactly as `grep -a -c -F` does.

Pure: no Redis, RQ or Peewee. A scan covers a whole file or a byte range of a plain file; the range
owns the lines whose first byte lies inside it, so results of contiguous ranges merge exactly.
Memory stays O(chunk_size) whatever the file size or line length.
"""

import bz2
import dataclasses
import datetime
import errno
import functools
import gzip
import logging
import lzma
import os
import re
import stat
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice, repeat
from operator import contains
from typing import Any

from logjobs.access import ANYWHERE, Roots
from logjobs.exceptions import ScanError, one_line

try:  # SIMD substring search: several times faster than bytes.find on the hot path
    import stringzilla as _sz
except ImportError:  # pragma: no cover - exercised by forcing _sz = None in the tests
    _sz = None  # type: ignore[assignment]

try:  # ISA-L inflate: about three times faster than the stdlib's zlib
    from isal import igzip as _igzip
    from isal.isal_zlib import error as _IsalError
except ImportError:  # pragma: no cover
    _igzip, _IsalError = None, zlib.error  # type: ignore[assignment, misc]

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 1024 * 1024
"""Bytes read per step; peak memory is a small multiple of it. 1 MiB stays in cache: 20% faster than
4."""

DEFAULT_MIN_PART = 32 * 1024 * 1024
"""split_ranges() makes no range smaller than this: a job per few MB would cost more than it
scans."""

NL = b"\n"
_NL_ONLY = bytes(i == NL[0] for i in range(256))
# bzip2's 4-byte header is plain text, so its block (or end-of-stream) magic is checked too
_MAGIC = (
    (re.compile(rb"\x1f\x8b"), "gzip"),
    (re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)", re.S), "bzip2"),
    (re.compile(rb"\xfd7zXZ\x00"), "xz"),
)
_CORRUPT: tuple[Any, ...] = (EOFError, zlib.error, lzma.LZMAError, _IsalError)
_KINDS = (
    (stat.S_ISDIR, "directory"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)
_PERMANENT = {
    errno.ENOENT: "no such file",
    errno.ENOTDIR: "no such file (a path component is not a directory)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "symlink loop (too many levels of symbolic links)",
    errno.ENAMETOOLONG: "path too long",
}


@dataclasses.dataclass
class ScanResult:
    """What one scan found: per-pattern line counts, lines and bytes scanned.

    `tail` says the scanned bytes end in a line without "\n" (counted, as grep does); a later scan
    of what was appended cannot simply add to such a result, since that line may have grown. A scan
    of a plain file that knows that line's own result keeps it as `partial` (see last_line): a
    later scan then starts at that line, and continues the result without it (without_partial).
    """

    counts: dict[str, int]
    lines: int | None  # None: not counted (a scan without `lines`)
    bytes: int
    compression: str | None = None
    tail: bool = False
    analysis: dict | None = None  # analysis.Analysis.to_dict() of the lines, when asked for
    partial: dict | None = None  # the to_dict() of the last line's own scan, when `tail`

    def to_dict(self) -> dict:
        d = dict(vars(self), counts=dict(self.counts))  # shallow: asdict() deep-copies, at a cost
        if d["partial"] is None:
            del d["partial"]  # most results: none
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ScanResult":
        return cls(
            dict(d["counts"]),
            d["lines"],
            d["bytes"],
            d.get("compression"),
            d.get("tail", False),
            d.get("analysis"),
            d.get("partial"),
        )


def scan(
    path,
    patterns: Sequence[str],
    start: int = 0,
    end: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    analyse: bool = False,
    lines: bool = True,
    roots: Roots = ANYWHERE,
    examples: bool = True,
    formats: Sequence | None = None,
    ignore_case: bool = False,
) -> ScanResult:
    """Count, per pattern, the lines containing it, in the file or in the lines owned by [start,
    end).

    In a compressed file, `start` skips that many uncompressed bytes (a scan continuing an earlier
    one, which ended at a line end) and `end` must be None: there is no seeking in a stream. With
    `analyse`, the same lines also go through an analysis.Analyzer (levels, top messages, time),
    which keeps an example line of each message template unless `examples` is off, and reads the
    lines with the one of `formats` (formats.BUILTIN by default) that fits the head of the file.
    With `ignore_case`, a line holds a pattern whatever the case of its ASCII letters, as with
    `grep -i` under LC_ALL=C. Without `lines`, the result's `lines` is None: counting every newline
    is a pass over each byte, slower than the pattern search itself, which grep -c does not make
    either. A file outside `roots` is refused
    (see access.Roots), where it is opened. Raises ScanError (permanent or not) for every file that
    cannot be read, ValueError for bad arguments.
    """
    if chunk_size < 1 or start < 0 or (end is not None and end < start):
        raise ValueError(f"bad scan arguments: start={start} end={end} chunk_size={chunk_size}")
    path = os.fspath(path)
    patterns = list(dict.fromkeys(patterns))
    with _open(path, roots) as f:
        try:
            compression = _sniff(f)
            if compression is None:
                first, size = os.pread(f.fileno(), _FIRST_BYTES, 0), os.fstat(f.fileno()).st_size
                pieces = _owned(f, start, end, chunk_size)
            elif end is not None:
                raise ValueError(
                    f"{printable(path)}: a {compression} file cannot be scanned by byte range"
                )
            else:
                pieces = _skip(_decompressed(f, compression, chunk_size, path), start, path)
            if analyse:
                analyzer = _analyzer(
                    f, path, compression, start, patterns, roots, examples, formats, ignore_case
                )
                pieces = _tee(pieces, analyzer.feed)
            if ignore_case:  # grep -i -F under LC_ALL=C: ASCII letters only fold
                pieces = map(bytes.lower, pieces)
            kernels = [_kernel(p, ignore_case) for p in patterns]
            counts, nlines, nbytes, tail = _count(pieces, kernels, chunk_size, lines)
            if compression is None:
                _still_holds(f, first, size, path)
        except OSError as e:
            raise _os_error(path, e) from None
    return ScanResult(
        dict(zip(patterns, counts)),
        nlines,
        nbytes,
        compression,
        tail,
        analyzer.finish().to_dict() if analyse else None,
    )


#: The bytes a scan of a plain file reads again at its end, to tell whether it was rewritten
#: meanwhile.
_FIRST_BYTES = 4096


def _analyzer(f, path, compression, start, patterns, roots, examples, known_formats, ignore_case):
    """The Analyzer of a scan of the open file `f` from `start`, reading its lines in the format
    that fits its head (the file's, whatever range is scanned: every part of a file reads it
    alike), and told the line before `start` in a plain file (a two-line record cut there)."""
    from logjobs import (
        analysis,
        formats,
    )  # its regexes take a while to compile: only when asked for

    # Syslog stamps have no year: the file's last write tells it.
    changed = datetime.datetime(1970, 1, 1) + datetime.timedelta(
        seconds=os.fstat(f.fileno()).st_mtime
    )
    if compression is None:
        head = os.pread(f.fileno(), formats.DETECT_BYTES, 0)
    else:
        head = peek(path, formats.DETECT_BYTES, roots)[2]
    fmt = formats.detect(head, formats.BUILTIN if known_formats is None else known_formats)
    analyzer = analysis.Analyzer(
        patterns, last_change=changed, examples=examples, format=fmt, ignore_case=ignore_case
    )
    if start and compression is None and fmt is not None and fmt.header:
        analyzer.follow(_line_holding(f.fileno(), start - 1, analysis.LINE_HEAD))
    return analyzer


#: How far back from a byte range's start a scan looks for the start of the line before it.
_LOOK_BACK = 64 << 10


def _line_holding(fd: int, pos: int, length: int) -> bytes:
    """The first `length` bytes of the line of a plain file that holds byte `pos` (b"" if it
    starts more than _LOOK_BACK bytes before)."""
    lo = max(0, pos - _LOOK_BACK)
    start = _back_to_line_start(fd, pos, lo)
    if start == lo and lo > 0:  # no line start as near as that
        return b""
    return os.pread(fd, length, start).split(NL, 1)[0]


def _back_to_line_start(fd: int, pos: int, floor: int = 0) -> int:
    """Where the line of a plain file that holds byte `pos` starts: past the last "\n" before
    `pos`, or `floor` if there is none from there on. Read back a block at a time (_line_start
    reads forward, to the next line's)."""
    top = pos
    while top > floor:
        step = min(DEFAULT_CHUNK_SIZE, top - floor)
        found = os.pread(fd, step, top - step).rfind(NL)
        if found >= 0:
            return top - step + found + 1
        top -= step
    return floor


def _still_holds(f, first: bytes, size: int, path: str):
    """Raise a ScanError worth retrying if the file was truncated while it was read (`copytruncate`
    rotation, a log emptied by hand), even if it grew again: the counts would be of no version of
    it. `first` and `size` are its first bytes and size when the scan began. A file of size 0 then,
    read whole anyway, is a kernel's (/proc, /sys), whose size is always 0: only its first bytes
    tell."""
    if (
        size
        and os.fstat(f.fileno()).st_size < f.tell()
        or os.pread(f.fileno(), len(first), 0) != first
    ):
        # No "retrying" in the words: the attempt may be the last (its state says whether one
        # follows).
        raise ScanError(
            f"{printable(path)}: truncated or rewritten while it was scanned", permanent=False
        )


def split_ranges(
    path, parts: int, min_part: int = DEFAULT_MIN_PART, roots: Roots = ANYWHERE
) -> list[tuple[int, int | None]]:
    """Cut a plain file into at most `parts` contiguous, line-aligned ranges for parallel scans.

    A compressed file cannot be cut: it is one range (0, None), which scan() accepts as is.
    """
    if parts < 1 or min_part < 1:
        raise ValueError(f"bad split arguments: parts={parts} min_part={min_part}")
    path = os.fspath(path)
    with _open(path, roots) as f:
        try:
            if _sniff(f):
                return [(0, None)]
            size = os.fstat(f.fileno()).st_size
            n = max(1, min(parts, size // min_part))
            cuts = sorted({_line_start(f, size * k // n) for k in range(1, n)} - {size})
        except OSError as e:
            raise _os_error(path, e) from None
    bounds = [0, *cuts, size]
    return list(zip(bounds, bounds[1:]))


def merge(results: Iterable[ScanResult]) -> ScanResult:
    """Add up the results of consecutive ranges of one file's content: exactly the single-pass
    result.

    The content may have been compressed in between (a rotated log continued in its archive): the
    last result says what the file is now. Lines not counted in any of them are not counted in all.
    """
    results = list(results)
    if len(results) == 1:  # the usual case (a file in one part): no need to read its analysis
        r = results[0]
        return ScanResult(
            dict(r.counts), r.lines, r.bytes, r.compression, r.tail, r.analysis, r.partial
        )
    total, analyses = ScanResult({}, 0, 0), []
    for r in results:
        total.compression = r.compression
        analyses.append(r.analysis)
        for p, n in r.counts.items():
            total.counts[p] = total.counts.get(p, 0) + n
        total.lines = None if total.lines is None or r.lines is None else total.lines + r.lines
        total.bytes += r.bytes
        if r.bytes:  # an empty range says nothing of where the line before it ends
            total.tail, total.partial = r.tail, r.partial
    known = [a for a in analyses if a is not None]
    if known and len(known) == len(analyses):
        from logjobs import analysis

        total.analysis = functools.reduce(
            analysis.Analysis.merge, map(analysis.Analysis.from_dict, known)
        ).to_dict()
    return total


def without_partial(result: dict) -> dict:
    """A result (as to_dict() makes it) less its `partial` last line: the result of the lines
    before it, where a scan continuing this one takes over (counts exact; its time buckets those of
    the whole)."""
    partial = result.get("partial")
    if partial is None:
        return result
    counts = {p: n - partial["counts"].get(p, 0) for p, n in result["counts"].items()}
    lines = result["lines"]
    if lines is not None and partial["lines"] is not None:
        lines -= partial["lines"]
    out = dict(result, counts=counts, lines=lines, bytes=result["bytes"] - partial["bytes"])
    out["tail"] = False
    del out["partial"]
    if result.get("analysis") is not None and partial.get("analysis") is not None:
        from logjobs import analysis

        out["analysis"] = (
            analysis.Analysis.from_dict(result["analysis"])
            .without(analysis.Analysis.from_dict(partial["analysis"]))
            .to_dict()
        )
    return out


def last_line(
    path, patterns: Sequence[str], end: int, start: int = 0, roots: Roots = ANYWHERE, **options
) -> dict | None:
    """The scan (to_dict()) of the last line of [start, end) in a plain file, which has no "\n",
    with scan()'s `options`. Found by reading back from `end`, a block at a time; None if the line
    changed meanwhile (the file was rewritten, or that line written on)."""
    with _open(os.fspath(path), roots) as f:
        try:
            at = _back_to_line_start(f.fileno(), end, start)
        except OSError as e:
            raise _os_error(path, e) from None
    line = scan(path, patterns, at, end, roots=roots, **options)
    return line.to_dict() if line.tail and line.bytes == end - at else None


def merge_dicts(results: Sequence[dict]) -> dict:
    """merge() of results as ScanResult.to_dict() makes them, as such a dict; a lone one as it
    is."""
    if len(results) == 1:
        return results[0]
    return merge(map(ScanResult.from_dict, results)).to_dict()


def head(path, length: int, roots: Roots = ANYWHERE) -> bytes:
    """The first `length` bytes of the file's content (uncompressed), or all of it when shorter."""
    return peek(path, length, roots)[2]


def peek(path, length: int, roots: Roots = ANYWHERE) -> tuple[os.stat_result, str | None, bytes]:
    """The file's stat, compression and first `length` bytes of content (uncompressed): one open."""
    path = os.fspath(path)
    with _open(path, roots) as f:
        try:
            st, compression = os.fstat(f.fileno()), _sniff(f)
            if compression is None:
                return st, None, f.read(length)
            data = b""
            for piece in _decompressed(f, compression, length, path):
                data += piece
                if len(data) >= length:
                    break
            return st, compression, data[:length]
        except OSError as e:
            raise _os_error(path, e) from None


def _count(
    pieces: Iterable[bytes], kernels: list, chunk_size: int, count_lines: bool = True
) -> tuple[list[int], int | None, int, bool]:
    """Count matching lines over a stream of pieces; lines may straddle pieces or be of any length.

    `carry` holds the unfinished line; once it outgrows a chunk, only its last `keep` bytes are kept
    (enough for a match straddling the next piece) and `seen` remembers which patterns it matched.
    Newlines are counted only for `count_lines`, or for an empty pattern, which matches every line.
    """
    counts = [0] * len(kernels)
    lines = nbytes = 0
    keep = max([k.longest - 1 for k in kernels] + [0])
    carry = b""
    seen = [False] * len(kernels)
    open_line = False
    nlcount = _nlcount() if count_lines or any(isinstance(k, _Every) for k in kernels) else None
    for data in pieces:
        if not data:  # nothing read (a range that starts in its last line): it opens no line
            continue
        nbytes += len(data)
        first = data.find(NL)
        if first < 0:
            carry += data
            open_line = True
            if len(carry) > chunk_size:
                seen = [s or k.contains(carry) for s, k in zip(seen, kernels)]
                carry = carry[max(0, len(carry) - keep) :]
            continue
        lo = 0
        if open_line:
            line = carry + data[: first + 1]
            lines += 1
            for i, k in enumerate(kernels):
                counts[i] += seen[i] or k.contains(line)
            lo = first + 1
        hi = data.rfind(NL) + 1
        if lo < hi:
            n = nlcount(data, lo, hi) if nlcount else None
            lines += n or 0
            for i, k in enumerate(kernels):
                counts[i] += k.count(data, lo, hi, n)
        carry = data[hi:]
        seen = [False] * len(kernels)
        open_line = hi < len(data)
    if open_line:  # a last line without "\n" counts, as in grep
        lines += 1
        for i, k in enumerate(kernels):
            counts[i] += seen[i] or k.contains(carry)
    return counts, lines if count_lines else None, nbytes, open_line


def _nlcount():
    """A newline counter over data[lo:hi]: the faster of stringzilla's two ways on this CPU."""
    if _sz is None:
        return lambda data, lo, hi: data.count(NL, lo, hi)
    if _count_newlines_by_search():
        return lambda data, lo, hi: _sz.Str(data)[lo:hi].count(NL)
    out = bytearray()

    def count(data, lo, hi):
        # Mapping "\n" to 1 and the rest to 0, then summing: no loop per newline.
        nonlocal out
        if len(out) < hi - lo:
            out = bytearray(hi - lo)
        view = memoryview(out)[: hi - lo]
        _sz.translate(data, _NL_ONLY, start=lo, end=hi, out=view)
        return _sz.bytesum(view)

    return count


@functools.cache
def _count_newlines_by_search() -> bool:
    """Is stringzilla's search (a loop per newline found) faster here than translating and summing?

    It depends on the CPU: on one with AVX-512 the search was 3x slower, on an AVX2-only one 2x
    faster. So it is timed once per process, on 256 KiB of log-like lines (about 2 ms).
    """
    sample = (
        b"2024-05-01T12:00:00.000Z web-1 app[1234]: INFO request served in 12 ms by upstream 3\n"
        * 3200
    )
    out = bytearray(len(sample))

    def by_search():
        return _sz.Str(sample).count(NL)

    def by_sum():
        _sz.translate(sample, _NL_ONLY, out=memoryview(out))
        return _sz.bytesum(memoryview(out))

    def best(f):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return min(times)

    return best(by_search) < best(by_sum)


def _kernel(pattern: str, fold: bool = False):
    """The fastest exact line counter for one grep -F pattern (newlines separate alternatives); with
    `fold`, of its lower-case form (the data is lower-cased too)."""
    return _new_kernel(pattern, _sz is not None, fold)


@functools.lru_cache(maxsize=256)
def _new_kernel(pattern: str, simd: bool, fold: bool = False):
    # Kernels hold no state of a scan: one serves every scan of its pattern in the process.
    alts = (os.fsencode(pattern).lower() if fold else os.fsencode(pattern)).split(NL)
    if b"" in alts:
        return _Every()
    if len(alts) == 1 and simd:
        return _Literal(alts[0])
    return _Regex(alts)


class _Every:
    """An empty pattern matches every line (so _count counts the lines for it)."""

    longest = 0

    def count(self, data, lo, hi, lines):
        return lines

    def contains(self, line):
        return True


class _Literal:
    """One literal, found with SIMD search.

    Split at each hit, the line holding hit t+1 matches first iff the part before it holds a "\n";
    so the count is the parts after the first one that hold a "\n" (the last one always does).
    More than a hit per DENSE bytes means many per line: the regex, which skips to the next line
    after a hit, wins there.
    """

    DENSE = 32

    def __init__(self, needle: bytes):
        self.needle, self.longest = needle, len(needle)
        self.dense = _Regex([needle])

    def count(self, data, lo, hi, lines):
        parts = _sz.Str(data)[lo:hi].split_iter(self.needle)
        next(parts)
        n = sum(map(contains, islice(parts, (hi - lo) // self.DENSE + 1), repeat(NL)))
        return n if next(parts, None) is None else self.dense.count(data, lo, hi, lines)

    def contains(self, line):
        return self.needle in line


class _Regex:
    """Stdlib path: `()` makes findall return the shared b"" per matching line, `[^\\n]*` eats the
    rest."""

    def __init__(self, alts: list[bytes]):
        self.longest = max(map(len, alts))
        self.rx = re.compile(b"()(?:" + b"|".join(map(re.escape, alts)) + rb")[^\n]*")

    def count(self, data, lo, hi, lines):
        return len(self.rx.findall(data, lo, hi))

    def contains(self, line):
        return self.rx.search(line) is not None


def _owned(f, start: int, end: int | None, chunk_size: int) -> Iterator[bytes]:
    """Yield the bytes of the lines whose first byte lies in [start, end), in pieces."""
    if end is not None and start >= end:
        return
    skipping = False
    if start:  # a line straddling `start` belongs to the range before
        f.seek(start - 1)
        skipping = f.read(1) != NL
    pos = start
    while data := f.read(chunk_size):
        lo = 0
        if skipping:
            lo = data.find(NL) + 1
            if not lo:
                pos += len(data)
                continue
            skipping = False
            if end is not None and pos + lo >= end:
                return
        if end is not None and end - 1 - pos < len(data):  # stop after the line holding byte end-1
            stop = data.find(NL, max(lo, end - 1 - pos))
            if stop >= 0:
                yield data[lo : stop + 1]
                return
        yield data[lo:] if lo else data
        pos += len(data)


def _tee(pieces: Iterable[bytes], feed) -> Iterator[bytes]:
    """The pieces, each handed to `feed` on the way."""
    for data in pieces:
        feed(data)
        yield data


def _skip(pieces: Iterator[bytes], n: int, path: str) -> Iterator[bytes]:
    """The stream of pieces without its first `n` bytes (those of an earlier scan, which it must
    hold)."""
    for data in pieces:
        if n >= len(data):
            n -= len(data)
            continue
        yield data[n:] if n else data
        n = 0
    # an archive made of less than was counted of its file: lines written after it was compressed
    if n:
        raise ScanError(
            f"{printable(path)}: holds less than was counted of it before it was compressed; push "
            "it again to scan it whole",
            permanent=True,
        )


def _decompressed(f, compression: str, chunk_size: int, path: str) -> Iterator[bytes]:
    """Yield the uncompressed stream (all members) in pieces; bad data is a permanent ScanError."""
    if compression == "xz":
        pieces = _xz_streams(f, chunk_size)
    elif compression == "gzip":
        pieces = _reads(
            _igzip.IGzipFile(fileobj=f) if _igzip else gzip.GzipFile(fileobj=f), chunk_size
        )
    else:
        pieces = _reads(bz2.BZ2File(f), chunk_size)
    try:
        yield from pieces
    except OSError as e:
        if e.errno is not None:  # a real read error, not bad data (gzip/bz2 raise OSError for both)
            raise
        raise _corrupt(path, compression, e) from None
    except _CORRUPT as e:
        raise _corrupt(path, compression, e) from None


def _reads(z, chunk_size: int) -> Iterator[bytes]:
    with z:
        while data := z.read(chunk_size):
            yield data


def _xz_streams(f, chunk_size: int) -> Iterator[bytes]:
    """The content of every stream of an xz file, in pieces of at most `chunk_size` bytes.

    Streams may be separated, and followed, by null padding in multiples of four bytes; anything
    else after a stream is corrupt, as `xz -t` says. (lzma.LZMAFile stops at the first padding and
    ignores whatever follows it, streams included, and takes padding at the end for a truncated
    stream.)
    """
    z: lzma.LZMADecompressor | None = lzma.LZMADecompressor(lzma.FORMAT_XZ)
    padding = 0
    while data := f.read(chunk_size):
        while data:
            if z is None:  # between streams
                rest = data.lstrip(b"\0")
                padding += len(data) - len(rest)
                if not rest:
                    break
                if padding % 4:
                    raise lzma.LZMAError(f"stream padding of {padding} bytes, not a multiple of 4")
                z, padding, data = lzma.LZMADecompressor(lzma.FORMAT_XZ), 0, rest
            piece = z.decompress(data, chunk_size)
            while True:  # the decompressor keeps the input it has not turned into output yet
                if piece:
                    yield piece
                if z.eof or z.needs_input:
                    break
                piece = z.decompress(b"", chunk_size)
            data, z = (z.unused_data, None) if z.eof else (b"", z)
    if z is not None:
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")
    if padding % 4:
        raise lzma.LZMAError(f"stream padding of {padding} bytes, not a multiple of 4")


def _open(path: str, roots: Roots):
    """Open a regular file within `roots` for reading; anything else is refused without ever
    blocking on it."""
    try:
        fd = roots.open(path, printable(path))
    except OSError as e:
        raise _os_error(path, e) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ScanError(
                f"{printable(path)}: not a regular file ({_kind(mode)})", permanent=True
            )
        os.set_blocking(fd, True)
        if hasattr(os, "posix_fadvise"):  # doubles read-ahead on a cold cache
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        return os.fdopen(fd, "rb", buffering=0)
    except OSError as e:
        os.close(fd)
        raise _os_error(path, e) from None
    except BaseException:
        os.close(fd)
        raise


def _sniff(f) -> str | None:
    """The compression named by the file's first bytes (not its name), or None; rewinds."""
    head = f.read(10)
    f.seek(0)
    return next((name for magic, name in _MAGIC if magic.match(head)), None)


def _line_start(f, offset: int) -> int:
    """The first line start at or after `offset` (the file size when there is none)."""
    f.seek(offset - 1)
    pos = offset - 1
    while data := f.read(64 * 1024):
        i = data.find(NL)
        if i >= 0:
            return pos + i + 1
        pos += len(data)
    return pos


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "special file")


def _os_error(path: str, e: OSError) -> ScanError:
    """Errors that cannot heal are permanent; any other OSError (EIO, ESTALE...) is worth a
    retry."""
    if e.errno in _PERMANENT:
        return ScanError(f"{printable(path)}: {_PERMANENT[e.errno]}", permanent=True)
    if e.errno == errno.ENXIO:  # open() of a socket, or of a device with no driver behind it
        try:
            kind = _kind(os.stat(path).st_mode)
        except OSError:
            kind = "no such device or address"
        return ScanError(f"{printable(path)}: not a regular file ({kind})", permanent=True)
    reason = e.strerror or str(e) or type(e).__name__
    return ScanError(f"{printable(path)}: read error: {one_line(reason)}", permanent=False)


def _corrupt(path: str, compression: str, e: BaseException) -> ScanError:
    reason = one_line(str(e) or type(e).__name__)
    return ScanError(f"{printable(path)}: corrupt {compression} data: {reason}", permanent=True)


def printable(path: str) -> str:
    """The path as it reads in a one-line message; escaped when it holds control characters."""
    return path if path.isprintable() else ascii(path)


def compression(path, roots: Roots = ANYWHERE) -> str | None:
    """The compression of the file at `path`, by content ("gzip", "bzip2", "xz"), or None."""
    path = os.fspath(path)
    with _open(path, roots) as f:
        try:
            return _sniff(f)
        except OSError as e:
            raise _os_error(path, e) from None


def _simd_works() -> bool:
    """stringzilla's API moves between releases: use it only where it counts a sample right."""
    sample = [b"xERRORyERROR\nERR", b"OR\n\nERROR", b"\n"]
    try:
        return _count(sample, [_kernel("ERROR")], 4) == ([3], 4, 26, False)
    except Exception:  # noqa: BLE001 - any failure means: do without it
        return False


if _sz is not None and not _simd_works():
    log.warning(
        "stringzilla %s does not work here; scanning with the slower stdlib path",
        getattr(_sz, "__version__", "?"),
    )
    _sz = None
