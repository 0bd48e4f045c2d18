"""The scanner counts exactly like `LC_ALL=C grep -a -c -F` (and zgrep/bzgrep/xzgrep), in bounded
memory."""

import bz2
import contextlib
import gzip
import json
import lzma
import os
import pathlib
import random
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logjobs import scanner
from logjobs.access import Roots
from logjobs.exceptions import ScanError
from logjobs.scanner import ScanResult, merge, scan, split_ranges

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = ["simd", "stdlib"] if scanner._sz is not None else ["stdlib"]
PATTERNS = [
    "ERROR",
    "E",
    "OR\r",
    "ERRORERROR",
    "aa",
    "",
    "ERROR\nwarn",
    "x\n",
    "café",
    os.fsdecode(b"\xff\xfe"),
    "\x01",
    "absent-zzz",
]
GREP = {None: "grep", "gzip": "zgrep", "bzip2": "bzgrep", "xz": "xzgrep"}
CORPUS = [
    "mixed.log",
    "no_final_newline.log",
    "crlf.log",
    "empty.log",
    "only_newline.log",
    "blank_lines.log",
    "single_no_newline.log",
    "overlaps.log",
    "long_line.log",
    "long_then_short.log",
    "multi_member.gz",
    "multi_stream.bz2",
    "multi_stream.xz",
    "padded_streams.xz",
    "long_line.xz",
    "empty.gz",
    "plain_named.gz",
    "gzip_named.log",
    "starts_like_bzip2.log",
]
FRAGMENTS = [
    b"ERROR",
    b"ERR",
    b"OR",
    b"E",
    b"\r",
    b"\x00",
    b"\xff\xfe",
    b"\xff",
    b"caf\xc3\xa9",
    b"aaa",
    b"warn",
    b"x",
    b"\x01",
    b" ",
    b"lorem ipsum dolor ",
    b"ERRORERROR",
]


@contextlib.contextmanager
def kernel(name):
    """Force the stdlib path by hiding stringzilla and isal, as on a machine without them."""
    saved = scanner._sz, scanner._igzip
    if name == "stdlib":
        scanner._sz = scanner._igzip = None
    try:
        yield
    finally:
        scanner._sz, scanner._igzip = saved


@pytest.mark.skipif(scanner._sz is None, reason="stringzilla is not installed")
@pytest.mark.parametrize("by_search", [True, False], ids=["search", "sum"])
def test_both_simd_newline_counters_count_alike(monkeypatch, by_search):
    """Which one a process uses depends on its CPU: both must be exact, at any offsets."""
    monkeypatch.setattr(scanner, "_count_newlines_by_search", lambda: by_search)
    count = scanner._nlcount()
    rnd = random.Random(5)
    data = b"\n".join(awkward_lines(rnd, 3000)) + b"\n\n"
    for lo, hi in [
        (0, len(data)),
        (1, len(data) - 1),
        (17, 17),
        (100, 4000),
        (len(data) - 3, len(data)),
    ]:
        assert count(data, lo, hi) == data.count(b"\n", lo, hi)


def awkward_lines(rnd, n):
    return [b"".join(rnd.choice(FRAGMENTS) for _ in range(rnd.randint(0, 12))) for _ in range(n)]


def build_corpus(d):
    """name -> (bytes on disk, compression, chunk sizes that force straddling)."""
    rnd = random.Random(7)
    text = b"\n".join(awkward_lines(rnd, 3000)) + b"\n"
    long_line = bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz ") for _ in range(3 * 2**20))
    small, big = (7, 64, scanner.DEFAULT_CHUNK_SIZE), (64, 4099, scanner.DEFAULT_CHUNK_SIZE)
    files = {
        "mixed.log": (text, None, small),
        "no_final_newline.log": (text + b"ERROR tail", None, small),
        "crlf.log": (text.replace(b"\n", b"\r\n"), None, small),
        "empty.log": (b"", None, small),
        "only_newline.log": (b"\n", None, small),
        "blank_lines.log": (b"\n\n\n", None, small),
        "single_no_newline.log": (b"xx ERROR", None, small),
        "overlaps.log": (b"aaaa\nERRORERRORERROR\naa\na\n", None, small),
        "long_line.log": (long_line + b"ERROR", None, big),
        "long_then_short.log": (b"E" + long_line + b"RROR\nERROR\n" + long_line[:1000], None, big),
        "multi_member.gz": (
            gzip.compress(text[:5001]) + gzip.compress(text[5001:] + b"E"),
            "gzip",
            small,
        ),
        "multi_stream.bz2": (bz2.compress(text[:777]) + bz2.compress(text[777:]), "bzip2", small),
        "multi_stream.xz": (lzma.compress(text[:333]) + lzma.compress(text[333:]), "xz", small),
        # xz's stream padding: null bytes in fours, between streams and at the end
        "padded_streams.xz": (
            lzma.compress(text[:333]) + b"\0" * 4 + lzma.compress(text[333:]) + b"\0" * 8,
            "xz",
            small,
        ),
        "long_line.xz": (lzma.compress(long_line + b"ERROR\nE"), "xz", big),
        "empty.gz": (gzip.compress(b""), "gzip", small),
        "plain_named.gz": (text, None, small),
        "gzip_named.log": (gzip.compress(text), "gzip", small),
        "starts_like_bzip2.log": (b"BZh9 is not bzip2\n" + text, None, small),
    }
    for name, (data, _, _) in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    return files


def grep_count(path, pattern, compression):
    """What the real tool prints; "" as pattern gives the line count."""
    argv = [GREP[compression], "-a", "-c", "-F", "--", os.fsencode(pattern), path]
    stdin = None
    if compression == "bzip2" and pattern == "":
        # Debian's bzgrep mistakes an empty pattern for a missing one; run the pipe it stands for
        argv = ["grep", "-a", "-c", "-F", "--", ""]
        stdin = subprocess.run(["bzip2", "-dc", path], capture_output=True, check=True).stdout
    env = {**os.environ, "LC_ALL": "C"}
    out = subprocess.run(argv, input=stdin, capture_output=True, env=env, check=False)
    assert out.returncode in (0, 1), out.stderr
    return int(out.stdout)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    files = build_corpus(d)
    assert sorted(files) == sorted(CORPUS)
    jobs = [(name, p) for name in files for p in PATTERNS]
    with ThreadPoolExecutor(4) as pool:  # the z*grep wrappers are shell scripts: slow to start
        found = pool.map(lambda job: grep_count(str(d / job[0]), job[1], files[job[0]][1]), jobs)
    expected = {name: {} for name in files}
    for (name, p), n in zip(jobs, found):
        expected[name][p] = n
    return d, files, expected


def reference(data, patterns):
    """A slow, obviously right model of grep -c -F on bytes."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    alts = {p: os.fsencode(p).split(b"\n") for p in patterns}
    return {p: sum(any(a in line for a in alts[p]) for line in lines) for p in patterns}, len(lines)


@pytest.mark.parametrize("name", CORPUS)
@pytest.mark.parametrize("kern", KERNELS)
def test_counts_match_grep(corpus, name, kern):
    d, files, expected = corpus
    data, compression, chunk_sizes = files[name]
    for chunk_size in chunk_sizes:
        with kernel(kern):
            r = scan(str(d / name), PATTERNS, chunk_size=chunk_size)
            # Without the line total, and without the empty pattern (which would need it anyway).
            nonempty = [p for p in PATTERNS if p]
            quick = scan(str(d / name), nonempty, chunk_size=chunk_size, lines=False)
        assert r.counts == expected[name], (name, chunk_size)
        assert r.lines == expected[name][""]
        assert (quick.counts, quick.lines) == ({p: expected[name][p] for p in nonempty}, None), (
            name,
            chunk_size,
        )
        assert r.compression == compression
        if compression is None:
            assert r.bytes == len(data)


def test_corpus_is_awkward(corpus):
    """Guard against a corpus that would let a sloppy scanner pass: the hard cases must be
    present."""
    d, files, expected = corpus
    assert expected["long_line.log"] == {**expected["long_line.log"], "ERROR": 1, "": 1}
    assert (
        expected["long_then_short.log"]["ERROR"] == 1 and expected["long_then_short.log"]["E"] == 2
    )
    assert expected["overlaps.log"]["aa"] == 2 and expected["overlaps.log"]["ERRORERROR"] == 1
    assert expected["plain_named.gz"] == expected["mixed.log"] == expected["gzip_named.log"]
    assert expected["crlf.log"]["OR\r"] > expected["mixed.log"]["OR\r"]
    assert expected["mixed.log"][os.fsdecode(b"\xff\xfe")] > 0


def test_surrogate_escaped_pattern_keeps_its_key(tmp_path):
    p = tmp_path / "f.log"
    p.write_bytes(b"\xff\xfe x\nplain\n\xff\xfe\n")
    pattern = os.fsdecode(b"\xff\xfe")
    assert scan(str(p), [pattern]).counts == {pattern: 2}


def test_result_is_json_simple(corpus):
    d, _, _ = corpus
    r = scan(str(d / "multi_member.gz"), ["ERROR"])
    back = json.loads(json.dumps(r.to_dict()))
    # The stream ends in "E", a line without "\n": a later scan could not just add to this one.
    assert back == {
        "counts": {"ERROR": r.counts["ERROR"]},
        "lines": r.lines,
        "bytes": r.bytes,
        "compression": "gzip",
        "tail": True,
        "analysis": None,
    }
    assert ScanResult.from_dict(back) == r
    analysed = scan(str(d / "multi_member.gz"), ["ERROR"], analyse=True)
    assert ScanResult.from_dict(json.loads(json.dumps(analysed.to_dict()))) == analysed
    assert analysed.analysis["levels"] and analysed.counts == r.counts


def test_tail_says_whether_the_last_line_is_open(tmp_path):
    p = tmp_path / "f.log"
    p.write_bytes(b"a ERROR\nb\n")
    assert scan(str(p), ["ERROR"]).tail is False
    with open(p, "ab") as f:
        f.write(b"c ERR")
    assert scan(str(p), ["ERROR"]).tail is True
    # A range that stops before the open line is whole.
    assert scan(str(p), ["ERROR"], 0, 5).tail is False


def test_compressed_scan_can_skip_what_an_earlier_scan_counted(tmp_path):
    text = b"".join(b"%d %s\n" % (i, b"ERROR" if i % 3 == 0 else b"INFO") for i in range(5000))
    p = tmp_path / "f.log.gz"
    p.write_bytes(gzip.compress(text))
    cut = text.index(b"\n", len(text) // 2) + 1
    rest = scan(str(p), ["ERROR"], cut)
    assert (rest.counts["ERROR"], rest.lines, rest.bytes) == (
        text[cut:].count(b"ERROR"),
        text[cut:].count(b"\n"),
        len(text) - cut,
    )
    with pytest.raises(ValueError, match="cannot be scanned by byte range"):
        scan(str(p), ["ERROR"], cut, cut + 10)


def test_head_is_the_uncompressed_start(tmp_path):
    text = b"first line\n" * 300
    (tmp_path / "a.log").write_bytes(text)
    (tmp_path / "a.log.gz").write_bytes(gzip.compress(text))
    (tmp_path / "short.log").write_bytes(b"xy")
    assert scanner.head(str(tmp_path / "a.log"), 1024) == text[:1024]
    assert scanner.head(str(tmp_path / "a.log.gz"), 1024) == text[:1024]
    assert scanner.head(str(tmp_path / "short.log"), 1024) == b"xy"


@pytest.mark.parametrize("kern", KERNELS)
def test_random_partitions_merge_to_single_pass(corpus, kern):
    d, files, expected = corpus
    rnd = random.Random(11)
    for name, chunk_sizes in [
        ("mixed.log", [5, 64, 10000]),
        ("no_final_newline.log", [5, 64, 10000]),
        ("crlf.log", [5, 64, 10000]),
        ("long_then_short.log", [4099, 2**16]),
    ]:
        path, size = str(d / name), len(files[name][0])
        for _ in range(6):
            cuts = sorted(rnd.sample(range(1, size), rnd.randint(1, 12)))
            bounds = [0, *cuts, size]
            with kernel(kern):
                parts = [
                    scan(path, PATTERNS, s, e, chunk_size=rnd.choice(chunk_sizes))
                    for s, e in zip(bounds, bounds[1:])
                ]
            total = merge(parts)
            assert total.counts == expected[name]
            assert (total.lines, total.bytes) == (expected[name][""], size)


@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(
        st.sampled_from([b"a", b"b", b"ab", b"\n", b"\r\n", b"\x00", b"aab", b"ba"]), max_size=60
    ).map(b"".join),
    chunk_size=st.integers(1, 9),
    rnd=st.randoms(use_true_random=False),
)
def test_any_partition_any_chunk_size_is_exact(tmp_path_factory, data, chunk_size, rnd):
    path = tmp_path_factory.mktemp("h") / "f.log"
    path.write_bytes(data)
    patterns = ["a", "ab", "aa", "ba", "", "b\nab", "\x00"]
    counts, lines = reference(data, patterns)
    cuts = sorted(rnd.sample(range(len(data) + 1), rnd.randint(0, min(5, len(data) + 1))))
    # The last range open-ended, as push plans it (end None: to the end of the file, however it
    # grew).
    bounds = [0, *cuts, None]
    for kern in KERNELS:
        with kernel(kern):
            whole = scan(str(path), patterns, chunk_size=chunk_size)
            total = merge(
                scan(str(path), patterns, s, e, chunk_size) for s, e in zip(bounds, bounds[1:])
            )
        assert (whole.counts, whole.lines, whole.bytes) == (counts, lines, len(data))
        assert total == whole
        with kernel(kern):
            quick = merge(
                scan(str(path), patterns, s, e, chunk_size, lines=False)
                for s, e in zip(bounds, bounds[1:])
            )
        assert (quick.counts, quick.lines, quick.bytes, quick.tail) == (
            counts,
            None,
            len(data),
            whole.tail,
        )


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(
        st.sampled_from(
            [
                b"a",
                b"A",
                b"Err",
                b"eRR",
                b"\n",
                b"\r\n",
                b"\x00",
                b"\xc3\x89",
                b"\xc3\xa9",
                b"[",
                b"{",
            ]
        ),
        max_size=80,
    ).map(b"".join),
    patterns=st.lists(
        st.sampled_from(["a", "A", "err", "ERR", "aA", "\u00e9", "\u00c9", "[", "E\nr"]),
        min_size=1,
        max_size=3,
        unique=True,
    ),
    cut=st.integers(0, 80),
    analyse=st.booleans(),
)
def test_ignore_case_counts_as_grep_i_does(tmp_path_factory, data, patterns, cut, analyse):
    """-i: exactly `LC_ALL=C grep -c -i -F`: ASCII letters fold, other bytes (UTF-8's É and é)
    are compared as they are; over byte ranges too, and with the analysis on."""
    folder = tmp_path_factory.mktemp("i")
    path = folder / "f.log"
    path.write_bytes(data)
    expected = {}
    for pattern in patterns:
        out = subprocess.run(
            ["grep", "-a", "-c", "-i", "-F", "--", pattern, str(path)],
            capture_output=True,
            env={"LC_ALL": "C", "PATH": os.environ["PATH"]},
        )
        expected[pattern] = int(out.stdout)
    for kern in KERNELS:
        with kernel(kern):
            whole = scan(str(path), patterns, analyse=analyse, ignore_case=True)
            parts = merge(
                scan(str(path), patterns, s, e, analyse=analyse, ignore_case=True)
                for s, e in ((0, min(cut, len(data))), (min(cut, len(data)), None))
            )
        assert whole.counts == expected
        assert parts.counts == expected
    gz = folder / "f.log.gz"
    gz.write_bytes(gzip.compress(data))
    assert scan(str(gz), patterns, ignore_case=True).counts == expected


def test_range_owns_lines_by_first_byte(tmp_path):
    p = tmp_path / "f.log"
    p.write_bytes(b"ERROR one\nERROR two\nthree\n")  # lines start at 0, 10, 20
    assert scan(str(p), ["ERROR"], 0, 1).counts == {"ERROR": 1}
    assert scan(str(p), ["ERROR"], 1, 10).lines == 0
    assert scan(str(p), ["ERROR"], 1, 11).counts == {"ERROR": 1}
    assert scan(str(p), ["ERROR"], 10, 10).lines == 0
    r = scan(str(p), ["ERROR"], 5, 21)
    assert (r.counts, r.lines, r.bytes) == ({"ERROR": 1}, 2, 16)
    # A last range that starts inside the last line owns no line, not an empty one at the end.
    for chunk_size in (1, 3, 1 << 20):
        r = scan(str(p), ["", "ERROR"], 25, None, chunk_size)
        assert (r.counts, r.lines, r.tail) == ({"": 0, "ERROR": 0}, 0, False)


def test_split_ranges_cover_the_file_on_line_starts(corpus):
    d, files, expected = corpus
    data = files["mixed.log"][0]
    path = str(d / "mixed.log")
    ranges = split_ranges(path, 7, min_part=1000)
    assert len(ranges) == 7
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert all(s < e and data[s - 1 : s] in (b"", b"\n") for s, e in ranges)
    assert merge(scan(path, PATTERNS, s, e) for s, e in ranges).counts == expected["mixed.log"]
    assert split_ranges(path, 7, min_part=len(data)) == [(0, len(data))]
    assert split_ranges(str(d / "empty.log"), 4) == [(0, 0)]
    assert split_ranges(str(d / "multi_member.gz"), 4) == [(0, None)]
    assert split_ranges(str(d / "long_line.log"), 4, min_part=1000) == [
        (0, len(files["long_line.log"][0]))
    ]


def test_byte_range_of_compressed_file_is_refused(corpus):
    """A stream has no byte ranges; only a start (skipping what an earlier scan counted) is
    taken."""
    d, _, _ = corpus
    with pytest.raises(ValueError):
        scan(str(d / "multi_member.gz"), ["ERROR"], 10, 20)
    with pytest.raises(ValueError):
        scan(str(d / "multi_stream.xz"), ["ERROR"], 0, 100)


MEMORY_PROBE = textwrap.dedent("""
    import os, resource, sys
    from logjobs.scanner import scan

    def peak():
        # ru_maxrss survives fork+exec, so it may still hold the (big) pytest parent's peak; VmHWM
        # does not
        if os.path.exists("/proc/self/status"):
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    path, small, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
    scan(small, ["ERROR", "zz", "a\\nb"], chunk_size=chunk)  # warm up imports and allocator
    before = peak()
    r = scan(path, ["ERROR", "zz", "a\\nb"], chunk_size=chunk)
    print(peak() - before, r.counts["ERROR"], r.lines)
""")


@pytest.mark.parametrize("shape", ["one_huge_line", "normal_lines", "gzip_huge_line"])
def test_memory_stays_bounded(tmp_path, shape):
    chunk = 2**20
    size = (100 if shape == "one_huge_line" else 40) * 2**20  # the single 100 MB line
    line = b"request ok " * 11 + b"\n"
    body = {
        "one_huge_line": lambda: b"x" * size + b"ERROR",
        "normal_lines": lambda: line * (size // len(line)) + b"ERROR\n",
        "gzip_huge_line": lambda: gzip.compress(b"y" * size + b"ERROR", 1),
    }[shape]()
    path = tmp_path / "big"
    path.write_bytes(body)
    small = tmp_path / "small.log"
    small.write_bytes(line * 1000)
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(path), str(small), str(chunk)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    growth, hits = int(out[0]), int(out[1])
    assert hits == 1
    assert growth < 6 * chunk, f"peak RSS grew by {growth / chunk:.1f} chunks"


def assert_scan_error(path, permanent, *words):
    with pytest.raises(ScanError) as e:
        scan(str(path), ["ERROR"])
    msg = str(e.value)
    assert e.value.permanent is permanent
    assert "\n" not in msg and str(path) in msg
    for w in words:
        assert w in msg
    return msg


def test_missing_file(tmp_path):
    assert_scan_error(tmp_path / "nope.log", True, "no such file")
    assert_scan_error(tmp_path / "nope" / "x.log", True, "no such file")


def test_directory(tmp_path):
    assert_scan_error(tmp_path, True, "directory")


def test_path_with_newline_stays_one_line(tmp_path):
    p = tmp_path / "a\nb.log"
    with pytest.raises(ScanError) as e:
        scan(str(p), ["x"])
    assert "\n" not in str(e.value) and "a\\nb.log" in str(e.value)


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code = (
        "import sys; from logjobs.scanner import scan; from logjobs.exceptions import "
        "ScanError\ntry: scan(sys.argv[1], ['x'])\nexcept ScanError as e: print(e.permanent, e)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(fifo)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.stdout.startswith("True ") and "not a regular file (FIFO)" in out.stdout, out
    assert str(fifo) in out.stdout


def test_socket_and_device(tmp_path):
    sock = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))
        assert_scan_error(sock, True, "not a regular file (socket)")
    # A device outside /dev (which is refused whatever it holds: see access.KERNEL_FILESYSTEMS).
    assert_scan_error("/dev/null", True, "outside what may be read")
    if os.getuid() == 0:
        os.mknod(tmp_path / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        assert_scan_error(tmp_path / "null", True, "not a regular file (character device)")


def test_symlink_loop(tmp_path):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    assert_scan_error(tmp_path / "a", True, "symlink loop")


def test_unreadable_file():
    if not hasattr(os, "setuid"):
        pytest.skip("no setuid on this platform")
    code = (
        "import os, sys; from logjobs.scanner import scan; from logjobs.exceptions import "
        # root reads anything; nobody must be refused
        "ScanError\nif os.getuid() == 0: os.setuid(65534)\n"
        "try: scan(sys.argv[1], ['x'])\nexcept ScanError as e: print(e.permanent, e)"
    )
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)  # the file itself is what nobody may not read
        for q in (d, *map(str, pathlib.Path(d).parents)):
            if not os.stat(q).st_mode & 0o001:
                pytest.skip(
                    f"{q} is not searchable by others: nobody could not even reach the file"
                )
        p = os.path.join(d, "secret.log")
        with open(p, "wb") as f:
            f.write(b"ERROR\n")
        os.chmod(p, 0)
        out = subprocess.run(
            [sys.executable, "-c", code, p], cwd=ROOT, capture_output=True, text=True, timeout=20
        )
    assert out.stdout.strip() == f"True {p}: permission denied", out


@pytest.mark.parametrize(
    "name, data, compression",
    [
        ("bad.gz", gzip.compress(b"ERROR\n" * 1000)[:10] + b"\x00garbage" * 50, "gzip"),
        ("truncated.gz", gzip.compress(b"ERROR\n" * 1000)[:-12], "gzip"),
        ("trailing_garbage.gz", gzip.compress(b"ERROR\n") + b"not gzip", "gzip"),
        ("truncated.xz", lzma.compress(os.urandom(4000))[:-50], "xz"),
        ("trailing_garbage.xz", lzma.compress(b"ERROR\n") + b"garbage ERROR\n", "xz"),
        ("odd_padding.xz", lzma.compress(b"ERROR\n") + b"\0" * 3, "xz"),
        ("bad.bz2", bz2.compress(b"ERROR\n" * 1000)[:20] + b"\xff" * 100, "bzip2"),
        ("truncated.bz2", bz2.compress(os.urandom(4000))[:-30], "bzip2"),
    ],
)
def test_corrupt_archive(tmp_path, name, data, compression):
    p = tmp_path / name
    p.write_bytes(data)
    assert_scan_error(p, True, f"corrupt {compression} data")


def test_io_error_is_transient(tmp_path, monkeypatch):
    p = tmp_path / "f.log"
    p.write_bytes(b"ERROR\n" * 10)

    def failing(*args):
        yield b"ERROR\n"
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(scanner, "_owned", failing)
    assert_scan_error(p, False, "Input/output error")


@pytest.mark.parametrize(
    "change,failed",
    [
        (lambda f: f.truncate(0), True),  # emptied: copytruncate rotation
        (
            lambda f: (f.truncate(0), f.write(b"INFO new\n" * 20000)),
            True,
        ),  # emptied, and longer again since
        (lambda f: f.truncate(6000), True),  # cut short, below what was read
        (
            lambda f: (f.seek(0, os.SEEK_END), f.write(b"ERROR more\n")),
            False,
        ),  # appended: a log being written
    ],
)
def test_a_file_truncated_while_scanned_is_not_counted(tmp_path, monkeypatch, change, failed):
    # The counts of a file emptied mid-scan would match no version of it; grep would print them.
    p = tmp_path / "f.log"
    p.write_bytes(b"ERROR line\n" * 100_000)
    owned = scanner._owned

    def changing_midway(f, start, end, chunk_size):
        pieces = owned(f, start, end, chunk_size)
        yield next(pieces)
        with open(p, "r+b") as w:
            change(w)
        yield from pieces

    monkeypatch.setattr(scanner, "_owned", changing_midway)
    for start, end in ((0, None), (0, 600_000), (500_000, None)):
        p.write_bytes(b"ERROR line\n" * 100_000)
        if failed:
            with pytest.raises(
                ScanError, match="truncated or rewritten while it was scanned$"
            ) as e:
                scan(str(p), ["ERROR"], start, end, chunk_size=1 << 16)
            assert (
                e.value.permanent is False
            )  # retried: the next attempt counts the file as it is then
        else:
            assert scan(str(p), ["ERROR"], start, end, chunk_size=1 << 16).counts["ERROR"] > 0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc")
def test_a_kernel_file_of_size_zero_is_counted_as_grep_counts_it():
    # /proc's files say they hold 0 bytes, and hold some: that is not a file truncated while
    # scanned. (Not /proc/self/status: its VmPeak grows as the scan allocates its buffer.) /proc,
    # allowed here by a root, is refused by default: see test_security.
    path = "/proc/cpuinfo"
    expected = int(
        subprocess.run(["grep", "-a", "-c", "-F", "processor", path], capture_output=True).stdout
    )
    assert os.stat(path).st_size == 0 and expected == os.cpu_count()
    assert scan(path, ["processor"], roots=Roots.of(["/proc"])).counts == {"processor": expected}


def test_simd_path_is_live_where_installed():
    """The parity tests above only cover the fast path if the import-time self-check accepted it."""
    pytest.importorskip("stringzilla")
    assert scanner._sz is not None


def test_compression_is_told_by_content(corpus):
    d, _, _ = corpus
    found = {
        name: scanner.compression(d / name)
        for name in (
            "gzip_named.log",
            "plain_named.gz",
            "multi_stream.bz2",
            "multi_stream.xz",
            "starts_like_bzip2.log",
        )
    }
    assert found == {
        "gzip_named.log": "gzip",
        "plain_named.gz": None,
        "multi_stream.bz2": "bzip2",
        "multi_stream.xz": "xz",
        "starts_like_bzip2.log": None,
    }
    with pytest.raises(ScanError) as e:
        scanner.compression(d / "nope")
    assert e.value.permanent


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress])
def test_an_archive_shorter_than_the_scan_it_continues_fails_for_good(tmp_path, compress):
    # A log compressed before its last lines were written, scanned with them: its archive cannot go
    # on from where that scan ended. The scan skipped past the end in silence, and the row kept the
    # counts of lines the archive does not hold.
    p = tmp_path / "app.log.1.gz"
    p.write_bytes(compress(b"ERROR one\nINFO two\n"))
    assert scan(str(p), ["ERROR"], start=19).counts == {
        "ERROR": 0
    }  # exactly what was counted: nothing new
    with pytest.raises(ScanError, match="holds less than was counted of it") as e:
        scan(str(p), ["ERROR"], start=20)
    assert e.value.permanent


# -- a last line without "\n", read again by the next scan -----------------------------------------

LOGHUB = pathlib.Path(__file__).parent / "data" / "loghub"


def _without_last_line(path, patterns, **options):
    """The scan of `path` less its last line, as a push continuing it takes it, and the scan of the
    lines before that line: they must be alike."""
    whole = scan(str(path), patterns, **options)
    assert whole.tail
    whole.partial = scanner.last_line(str(path), patterns, whole.bytes, **options)
    assert whole.partial is not None
    kept = scanner.without_partial(whole.to_dict())
    before = scan(str(path), patterns, 0, kept["bytes"], **options).to_dict()
    return kept, before


def _alike(kept, before):
    assert {k: kept[k] for k in ("counts", "lines", "bytes", "tail")} == {
        k: before[k] for k in ("counts", "lines", "bytes", "tail")
    }
    if before.get("analysis") is not None:
        mine, theirs = kept["analysis"], before["analysis"]
        assert (mine["levels"], mine["minutes"], mine["overflow"]) == (
            theirs["levels"],
            theirs["minutes"],
            theirs["overflow"],
        )
        assert {
            (m["level"], m["template"]): (m["count"], m["minutes"]) for m in mine["messages"]
        } == {(m["level"], m["template"]): (m["count"], m["minutes"]) for m in theirs["messages"]}


#: The samples that end without "\n" (six of the eight).
OPEN_ENDED = sorted(
    path.name for path in LOGHUB.glob("*/*.log") if not path.read_bytes().endswith(b"\n")
)


@pytest.mark.parametrize("name", OPEN_ENDED)
def test_a_real_log_less_its_open_last_line_is_the_scan_of_the_lines_before(name):
    (path,) = LOGHUB.glob(f"*/{name}")
    _alike(*_without_last_line(path, ["ERROR", "error"], analyse=True))


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(
        st.sampled_from(
            [
                "2024-05-01 12:00:01 ERROR disk 42 full",
                "2024-05-01 12:01:07 INFO user 7 logged in",
                "2024-05-01 13:00:00 WARN slow 3 ms",
                "ERROR no time 9",
                "",
                "\x00\xff bytes",
                "2023-01-01 00:00:00 FATAL old",
            ]
        ),
        min_size=0,
        max_size=30,
    ),
    last=st.sampled_from(["2024-05-01 12:02:00 ERROR hal", "INFO", "x", "ERROR", "\r"]),
    analyse=st.booleans(),
)
def test_any_log_less_its_open_last_line_is_the_scan_of_the_lines_before(lines, last, analyse):
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "a.log"
        path.write_bytes("".join(line + "\n" for line in lines).encode("latin-1") + last.encode())
        _alike(*_without_last_line(path, ["ERROR"], analyse=analyse, lines=analyse))


def test_a_last_line_written_on_meanwhile_is_not_taken(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"ERROR a\nERROR open")
    end = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b" and on")
    assert scanner.last_line(str(path), ["ERROR"], end) is None
    with open(path, "ab") as f:
        f.write(b"\n")
    assert scanner.last_line(str(path), ["ERROR"], path.stat().st_size) is None  # ended
