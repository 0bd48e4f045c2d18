#!/usr/bin/env python3
"""Issue 19's measure: the analysis on real systems' logs, against their labels, beside Drain3.

    python bench/loghub.py                 # every system under tests/data/loghub
    python bench/loghub.py --only HDFS,Spark --rounds 5

It fetches nothing: the samples are the Loghub collection's 2,000 labelled lines of eight systems
(tests/data/loghub, with Loghub's license and the citation it asks for). Per system:

  format     the log format the scan picked for the file (see logjobs/formats.py)
  levels     share of lines whose level is the labelled one (the Level column, in logjobs'
             names; systems without one: n/a)
  times      lines a `report --since/--until` window over the middle third of the file's span
             counts, against the labelled lines in it (exact is the goal)
  GA         grouping accuracy (Zhu et al., ICSE-SEIP 2019): the share of lines whose template
             groups exactly the lines of their labelled EventId. logjobs' templates are those
             `top` shows (each line's, folded by analysis.fold_templates); Drain3's (default
             settings, fed the labelled Content, its best case) come from the same run
  speed      the whole analysis (scanner.scan with analyse=True) in MB/s on one core, the file
             read from the page cache, beside counting alone and Drain3 (lines/s as MB/s)

Drain3 is installed by `pip install drain3` (it is no dependency of logjobs); without it, its
columns say n/a.
"""

import argparse
import collections
import csv
import datetime
import os
import statistics
import sys
import tempfile
import time

from logjobs import analysis, formats, scanner

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, os.pardir, "tests", "data", "loghub")
#: Labelled levels as logjobs names them (a system's Level column that is no level is left out).
NOT_LEVELS = {"Linux"}  # its "Level" column holds the host name


def labelled(system):
    """The rows of a system's structured CSV, in line order."""
    with open(
        os.path.join(DATA, system, f"{system}_2k.log_structured.csv"), newline="", encoding="utf-8"
    ) as f:
        return list(csv.DictReader(f))


def log_lines(system):
    with open(os.path.join(DATA, system, f"{system}_2k.log"), "rb") as f:
        return f.read().split(b"\n")


def level_of(word):
    return formats.STANDARD_LEVELS.get(word.lower(), word.upper())


def label_minute(system, row, year):
    """The labelled minute of a line, "MM-DD HH:MM" (years are left out: some systems have none)."""
    try:
        if system in ("HDFS",):
            t = datetime.datetime.strptime(row["Date"] + row["Time"][:4], "%y%m%d%H%M")
        elif system == "Spark":
            t = datetime.datetime.strptime(f"{row['Date']} {row['Time'][:5]}", "%y/%m/%d %H:%M")
        elif system in ("Hadoop", "Zookeeper"):
            t = datetime.datetime.strptime(f"{row['Date']} {row['Time'][:5]}", "%Y-%m-%d %H:%M")
        elif system == "Apache":
            t = datetime.datetime.strptime(row["Time"][4:], "%b %d %H:%M:%S %Y")
        elif system == "OpenSSH":
            t = datetime.datetime.strptime(
                f"{year} {row['Date']} {row['Day']} {row['Time'][:5]}", "%Y %b %d %H:%M"
            )
        elif system == "Linux":
            t = datetime.datetime.strptime(
                f"{year} {row['Month']} {row['Date']} {row['Time'][:5]}", "%Y %b %d %H:%M"
            )
        elif system == "HealthApp":
            t = datetime.datetime.strptime(row["Time"][:14], "%Y%m%d-%H:%M")
        else:
            return None
    except (ValueError, KeyError):
        return None
    return t.strftime("%m-%dT%H:%M")


def grouping_accuracy(truth, found):
    """Zhu et al.'s GA: the share of lines whose found group holds exactly their true group's
    lines."""
    true_groups = collections.defaultdict(set)
    found_groups = collections.defaultdict(set)
    for i, (t, f) in enumerate(zip(truth, found)):
        true_groups[t].add(i)
        found_groups[f].add(i)
    right = 0
    for members in found_groups.values():
        first = truth[next(iter(members))]
        if true_groups[first] == members:
            right += len(members)
    return right / len(truth)


def drain_templates(contents):
    try:
        from drain3 import TemplateMiner
        from drain3.template_miner_config import TemplateMinerConfig
    except ImportError:
        return None, None
    config = TemplateMinerConfig()
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    started = time.perf_counter()
    ids = [miner.add_log_message(c)["cluster_id"] for c in contents]
    seconds = time.perf_counter() - started
    return ids, seconds


def measure(system, rounds):
    return {**accuracy(system), **speed(system, rounds)}


def accuracy(system):
    """The format, levels, times and GA of one system (logjobs' and Drain3's GA)."""
    rows = labelled(system)
    path = os.path.join(DATA, system, f"{system}_2k.log")
    mtime = datetime.datetime.fromtimestamp(os.stat(path).st_mtime, datetime.UTC)
    year = mtime.year
    head = scanner.head(path, formats.DETECT_BYTES)
    fmt = formats.detect(head, formats.BUILTIN)
    lines = log_lines(system)[: len(rows)]
    read = [analysis.read_line(line, fmt, year) for line in lines]

    # Levels: per line, against the label.
    if "Level" in rows[0] and system not in NOT_LEVELS:
        right = sum(level_of(r["Level"]) == (got[0] or "") for r, got in zip(rows, read))
        levels = right / len(rows)
    else:
        levels = None

    # Times: a window over the middle third of the labelled span, as report --since/--until counts
    # it.
    minutes = [label_minute(system, r, year) for r in rows]
    known = sorted(m for m in minutes if m)
    result = scanner.scan(path, ["ERROR"], analyse=True)
    if known:
        lo, hi = known[len(known) // 3], known[2 * len(known) // 3]
        expected = sum(1 for m in minutes if m and lo <= m < hi)
        got = sum(
            n
            for minute, by_level in result.analysis["minutes"].items()
            if lo <= minute[5:] < hi
            for n in by_level.values()
        )
        times = (got, expected)
    else:
        times = None

    # Templates: grouping accuracy, ours and Drain3's.
    truth = [r["EventId"] for r in rows]
    keys = [(lv, t) for lv, _, t, _ in read]
    folded = analysis.fold_templates(keys)
    ga = grouping_accuracy(truth, [folded[key] for key in keys])
    drain_ids, _ = drain_templates([r["Content"] for r in rows])
    drain_ga = grouping_accuracy(truth, drain_ids) if drain_ids else None
    return {
        "system": system,
        "format": fmt.name if fmt else None,
        "levels": levels,
        "times": times,
        "ga": ga,
        "drain_ga": drain_ga,
    }


def speed(system, rounds):
    """MB/s of the analysis, of counting alone, and of Drain3 (fed each line's labelled Content,
    the 2,000 lines ten times over: its tree and caches warm, as in a long log), on one core."""
    rows = labelled(system)
    path = os.path.join(DATA, system, f"{system}_2k.log")
    _, drain_seconds = drain_templates([r["Content"] for r in rows] * 10)
    data = open(path, "rb").read()
    if not data.endswith(b"\n"):
        data += b"\n"
    with tempfile.NamedTemporaryFile(suffix=".log", delete=False) as big:
        big.write(data * max(1, (20 << 20) // len(data)))
    try:
        size = os.path.getsize(big.name) / 2**20
        analysed = min(
            _time(lambda: scanner.scan(big.name, ["ERROR"], analyse=True)) for _ in range(rounds)
        )
        counted = min(_time(lambda: scanner.scan(big.name, ["ERROR"])) for _ in range(rounds))
    finally:
        os.unlink(big.name)
    drain_mbs = (10 * len(data) / 2**20) / drain_seconds if drain_seconds else None
    return {
        "mbs": size / analysed,
        "count_mbs": size / counted,
        "drain_mbs": drain_mbs,
        "lines_s": len(rows) * (size * 2**20 / len(data)) / analysed,
    }


def _pct(value):
    return "n/a" if value is None else f"{value:.1%}"


def _num(value, spec, unit=""):
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def _time(f):
    started = time.perf_counter()
    f()
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", help="Systems, comma-separated (default: every one under tests/data/loghub)."
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="Timed runs of each speed (the best is kept)."
    )
    args = parser.parse_args(argv)
    systems = (
        args.only.split(",")
        if args.only
        else sorted(d for d in os.listdir(DATA) if os.path.isdir(os.path.join(DATA, d)))
    )
    print(
        f"{'system':10} {'format':16} {'levels':>7} {'times':>11} {'GA':>6} {'Drain3':>7} "
        f"{'MB/s':>6} {'count':>6} {'Drain3':>7} {'x Drain3':>8} {'lines/s':>9}"
    )
    results = []
    for system in systems:
        r = measure(system, args.rounds)
        results.append(r)
        times = f"{r['times'][0]}/{r['times'][1]}" if r["times"] else "n/a"
        print(
            f"{system:10} {r['format'] or '-':16} {_pct(r['levels']):>7} {times:>11} "
            f"{r['ga']:6.4f} "
            f"{_num(r['drain_ga'], '.4f'):>7} {r['mbs']:6.1f} {r['count_mbs']:6.0f} "
            f"{_num(r['drain_mbs'], '.2f'):>7} "
            f"{_num(r['mbs'] / r['drain_mbs'] if r['drain_mbs'] else None, '.0f', 'x'):>8} "
            f"{r['lines_s']:9.0f}",
            flush=True,
        )
    print(
        f"mean GA {statistics.mean(r['ga'] for r in results):.3f}"
        + (
            f", Drain3 "
            f"{statistics.mean(r['drain_ga'] for r in results if r['drain_ga'] is not None):.3f}"
            if any(r["drain_ga"] is not None for r in results)
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
