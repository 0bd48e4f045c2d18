"""Seeded log corpora for the benchmarks: big plain logs, their gzip, and folders of small logs.

The same seed gives the same bytes, so runs on different days compare. Big files are kept and
reused when they already exist at the wanted size (generating 850 MB takes a while).
"""

import gzip
import os
import random
import shutil

PATTERN = "ERROR"
#: Share of lines holding PATTERN in each big corpus.
CORPORA = {"dense": 0.25, "sparse": 0.01}

_WORDS = (
    "request user session cache db timeout retry upstream payload token worker queue job "
    "latency shard replica commit rollback handshake"
).split()


def log_lines(rnd, n, dense):
    """Realistic 100-150 byte log lines; ERROR in `dense` of them, INFO elsewhere.

    No WARN/DEBUG: their E and R would slow grep's skip loop, flattering the ratio."""
    out = []
    for _ in range(n):
        level = "ERROR" if rnd.random() < dense else "INFO"
        head = (
            f"2024-05-{rnd.randint(1, 28):02d}T{rnd.randint(0, 23):02d}:"
            f"{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}.{rnd.randint(0, 999):03d}Z "
            f"web-{rnd.randint(1, 9)} app[{rnd.randint(100, 99999)}]: {level} "
        )
        want = rnd.randint(100, 150) - len(head) - 1
        msg = ""
        while len(msg) < want:
            msg += rnd.choice(_WORDS) + " "
        out.append((head + msg[:want] + "\n").encode())
    return out


def generate(path, size, dense, seed):
    """Write about `size` bytes drawn from a seeded pool of lines; kept for reuse across runs."""
    if os.path.exists(path) and os.path.getsize(path) >= size:
        return
    rnd = random.Random(seed)
    pool = log_lines(rnd, 50_000, dense)
    with open(path + ".tmp", "wb") as f:
        written = 0
        while written < size - 200:
            block = b"".join(rnd.choices(pool, k=30_000))
            if written + len(block) > size:
                block = block[: block.rfind(b"\n", 0, size - written) + 1]
            f.write(block)
            written += len(block)
    os.replace(path + ".tmp", path)


def big_log(workdir, name, size_mb, seed):
    """The path of the `name` corpus ("dense" or "sparse") of `size_mb` MiB, generated if
    missing."""
    path = os.path.join(workdir, f"{name}-{size_mb}mb-s{seed}-v2.log")
    generate(path, size_mb * 2**20, CORPORA[name], seed)
    return path


def compress(src, dst):
    """gzip `src` to `dst` (level 1, ISA-L when installed), unless `dst` is already newer."""
    if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
        return
    try:
        from isal import igzip as gz
    except ImportError:
        gz = gzip
    with open(src, "rb") as fin, gz.open(dst + ".tmp", "wb", compresslevel=1) as fout:
        shutil.copyfileobj(fin, fout, 4 << 20)
    os.replace(dst + ".tmp", dst)


def small_logs(directory, files, size, dense, seed):
    """A folder of `files` logs of at most `size` bytes each (whole lines); returns the lines with
    PATTERN.

    Regenerated only when the folder does not hold exactly that set already.
    """
    marker = (
        directory.rstrip("/") + ".corpus"
    )  # beside the folder: a push of the folder must not see it
    spec = f"{files} {size} {dense} {seed}"
    if os.path.exists(marker):
        with open(marker) as f:
            known = f.read().split("\n")
        if known[0] == spec:
            return int(known[1])
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    rnd = random.Random(seed)
    pool = log_lines(rnd, 20_000, dense)
    needle, matches = PATTERN.encode(), 0
    for i in range(files):
        lines, total = [], 0
        while True:
            line = rnd.choice(pool)
            if total + len(line) > size:
                break
            lines.append(line)
            total += len(line)
        matches += sum(needle in line for line in lines)
        with open(os.path.join(directory, f"app-{i:05d}.log"), "wb") as f:
            f.write(b"".join(lines))
    with open(marker, "w") as f:
        f.write(f"{spec}\n{matches}")
    return matches
