#!/usr/bin/env python3
"""Time logjobs' scanner against `grep -c -F` (and zgrep) on generated logs, side by side.

    python bench/bench_scan.py --size-mb 850 --rounds 5     # the perf target: ratio <= 2
    python bench/bench_scan.py --size-mb 8 --rounds 3       # a smoke run: a few seconds

Corpora are seeded, so runs compare: "dense" (25% of lines hold ERROR), "sparse" (1%), and a gzip
of dense. Each tool runs in its own process so its peak RSS is its own; times are medians.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from corpus import CORPORA, PATTERN, big_log, compress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh interpreter: VmHWM is then the scanner's own peak (ru_maxrss would inherit ours).
PROBE = """
import json, sys, time
from logjobs import scanner
path, pattern, rounds, kernel = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
lines = sys.argv[5] == "lines"
if kernel == "stdlib":
    scanner._sz = scanner._igzip = None
times = []
for _ in range(rounds):
    t = time.perf_counter()
    r = scanner.scan(path, [pattern], lines=lines)
    times.append(time.perf_counter() - t)
with open("/proc/self/status") as f:
    rss = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
print(json.dumps({"times": times, "count": r.counts[pattern], "rss": rss}))
"""


def time_grep(tool, path, rounds):
    """Median wall time, count, and peak RSS (when /usr/bin/time is there to read it)."""
    argv = [tool, "-a", "-c", "-F", "--", PATTERN, path]
    env = {**os.environ, "LC_ALL": "C"}
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        out = subprocess.run(argv, capture_output=True, env=env, check=False)
        times.append(time.perf_counter() - t)
    return statistics.median(times), int(out.stdout), peak_rss(argv, env)


def peak_rss(argv, env=None):
    """Peak RSS (bytes) of a run of a native program, read by /usr/bin/time; None without it.

    Not wait4's ru_maxrss: it counts the Python process the child was forked from."""
    if not os.path.exists("/usr/bin/time"):
        return None
    r = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *argv], capture_output=True, env=env, text=True
    )
    return int(r.stderr.split()[-1]) * 1024


def time_scan(path, rounds, kernel, lines=False):
    """As time_grep, for scanner.scan in a fresh interpreter. Without `lines`, the scan is the one a
    `push --counts-only` job makes: it counts the pattern's lines only, as grep -c does; with it,
    the scan also counts every line (as a scan with the analysis does)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            path,
            PATTERN,
            str(rounds),
            kernel,
            "lines" if lines else "-",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    r = json.loads(out)
    return statistics.median(r["times"]), r["count"], r["rss"]


def mb(n):
    return "-" if n is None else f"{n / 2**20:.0f}MB"


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--size-mb", type=int, default=256, help="size of each plain corpus (default 256)"
    )
    ap.add_argument("--rounds", type=int, default=5, help="timed runs per tool; medians are shown")
    ap.add_argument(
        "--dir", help="where corpora live (kept and reused); default a temporary directory"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-stdlib", action="store_true", help="skip the pure-stdlib fallback path")
    args = ap.parse_args()

    workdir = args.dir or tempfile.mkdtemp(prefix="logjobs-bench-")
    os.makedirs(workdir, exist_ok=True)
    try:
        cases = []
        for name in CORPORA:
            cases.append((name, big_log(workdir, name, args.size_mb, args.seed), "grep"))
        compress(cases[0][1], cases[0][1] + ".gz")
        cases.append(("dense.gz", cases[0][1] + ".gz", "zgrep"))

        kernels = ["native"] + ([] if args.no_stdlib else ["stdlib"])
        print(f"{args.rounds} rounds, medians; pattern {PATTERN!r}; corpora in {workdir}")
        head = f"{'corpus':9} {'MB':>6} {'matches':>9} {'grep s':>7} {'rss':>6}"
        for k in kernels:
            head += f" | {k + ' s':>9} {'ratio':>6} {'rss':>6}"
        print(head)
        for name, path, tool in cases:
            g_time, g_count, g_rss = time_grep(tool, path, args.rounds)
            size = os.path.getsize(path) / 2**20
            row = f"{name:9} {size:6.0f} {g_count:9} {g_time:7.3f} {mb(g_rss):>6}"
            for k in kernels:
                s_time, s_count, s_rss = time_scan(path, args.rounds, k)
                if s_count != g_count:
                    sys.exit(f"MISMATCH on {name} ({k}): logjobs {s_count} != {tool} {g_count}")
                row += f" | {s_time:9.3f} {s_time / g_time:6.2f} {mb(s_rss):>6}"
            print(row, flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
