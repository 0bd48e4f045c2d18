"""The `logjobs` command: parse, call one library function, format. Errors end in one line."""

import collections
import contextlib
import functools
import glob
import io
import itertools
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time

import click
import redis

from . import __version__, connections, outcomes, queues, scanner
from .defaults import (
    DEFAULT_DASHBOARD_HOST,
    DEFAULT_DASHBOARD_PORT,
    DEFAULT_QUEUE,
    DEFAULT_WATCH_DEBOUNCE,
    LEVELS,
    QUEUES,
    WATCH_MAX_DELAY_PERIODS,
)
from .exceptions import LogJobsError, NoDatabase, PushCut
from .rqsafe import environ_with_worker_classes
from .settings import RANGES, Settings, parse_intervals, redact_url
from .submission import Submission, unattended

#: Exit status of a refusal or an unreachable service (as click uses 2 for usage errors).
EXIT_REFUSED = 2
#: Exit status after Ctrl-C, as a shell reports a command SIGINT ended.
EXIT_INTERRUPTED = 128 + signal.SIGINT


def fail(message):
    click.echo(f"logjobs: error: {message}", err=True)
    sys.exit(EXIT_REFUSED)


def one_line_errors(command):
    """Turn library and Redis errors into one line on stderr and exit status 2, never a
    traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            try:
                return command(*args, **kwargs)
            finally:
                sys.stdout.flush()  # a reader gone shows here, not as an error at exit
        except BrokenPipeError:
            # `logjobs report | head`: the reader has what it wanted. Stop as grep does, without a
            # word.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(128 + signal.SIGPIPE)
        except LogJobsError as exc:
            fail(str(exc))
        except redis.RedisError as exc:
            settings = click.get_current_context().obj
            fail(f"lost Redis at {redact_url(settings.redis_url)}: {exc}")
        except KeyboardInterrupt:
            click.echo("logjobs: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            peewee = sys.modules.get(
                "peewee"
            )  # imported only by the commands that open the database
            if peewee is not None and isinstance(exc, peewee.PeeweeException):
                from .models import database_reason

                target = click.get_current_context().obj.db
                fail(f"status database {redact_url(target)}: {database_reason(exc, target)}")
            logging.getLogger(__name__).debug("traceback", exc_info=True)
            click.echo(
                f"logjobs: internal error: {type(exc).__name__}: {exc} (run with -v to see where)",
                err=True,
            )
            sys.exit(70)  # EX_SOFTWARE

    return wrapper


class UsageError(click.UsageError):
    """A usage error said in one line, as every other refusal: click's takes three."""

    def show(self, file=None):
        hint = f" (see `{self.ctx.command_path} --help`)" if self.ctx else ""
        click.echo(f"logjobs: error: {self.format_message()}{hint}", err=True)


class Group(click.Group):
    """click's group, its usage errors (and its commands') in one line."""

    def make_context(self, *args, **kwargs):
        with _one_line_usage():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _one_line_usage():
            return super().invoke(ctx)


@contextlib.contextmanager
def _one_line_usage():
    try:
        yield
    except (
        UsageError,
        _NO_ARGS_IS_HELP,
    ):  # `logjobs` alone: the help (click 8.2 raises it as an error)
        raise
    except click.UsageError as exc:
        raise UsageError(exc.format_message(), exc.ctx) from None


# Click 8.1 has no such error: a UsageError (logjobs' own) again stands in for it.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", UsageError)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="logjobs")
@click.option(
    "--redis-url",
    metavar="URL",
    help="Redis to use [env LOGJOBS_REDIS_URL; default redis://127.0.0.1:6379/0].",
)
@click.option(
    "--db",
    metavar="PATH|URL",
    help="Status database: SQLite path or database URL [env LOGJOBS_DB].",
)
@click.option(
    "--config", "config_file", metavar="FILE", help="INI config file [env LOGJOBS_CONFIG]."
)
@click.option("-v", "--verbose", is_flag=True, help="Log what happens, to stderr.")
@click.pass_context
def cli(ctx, redis_url, db, config_file, verbose):
    """Count what matters in log files, on all your machines, as reliable RQ jobs.

    \b
    Example:
      logjobs push --priority high /var/log/app/
      logjobs worker          # rq worker high default low, with logjobs' safe classes
      logjobs mirror
      logjobs report --failed
    """
    _whole_writes()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("peewee").setLevel(logging.INFO)  # its DEBUG is every SQL statement
    try:
        ctx.obj = Settings.load(config_file=config_file, redis_url=redis_url, db=db)
    except LogJobsError as exc:
        fail(str(exc))


def _whole_writes():
    """Under PYTHONUNBUFFERED (containers often set it), stdout writes straight to its descriptor,
    and Python drops without a word what a write(2) did not take (a pipe whose reader left
    mid-write): a cut `report --json` that exits 0. A buffer, flushed at each line as -u intends,
    writes it all or raises BrokenPipeError."""
    if isinstance(sys.stdout, io.TextIOWrapper) and isinstance(sys.stdout.buffer, io.RawIOBase):
        sys.stdout = io.TextIOWrapper(
            io.BufferedWriter(sys.stdout.buffer),
            encoding=sys.stdout.encoding,
            errors=sys.stdout.errors,
            line_buffering=True,
        )


# Options of push and watch alike: where the scans go, what they count, how their jobs run.
PRIORITY = click.option(
    "--priority",
    type=click.Choice(QUEUES),
    default=DEFAULT_QUEUE,
    show_default=True,
    help="Queue to push into; workers drain high, then default, then low.",
)
NODE = click.option(
    "--node",
    metavar="NAME",
    help="The logs are on this host only: use its queues (NAME.high, ...), which only its workers "
    "read.",
)
PATTERNS = click.option(
    "--pattern",
    "patterns",
    multiple=True,
    metavar="TEXT",
    help="Literal text to count lines of (repeatable) [default: ERROR].",
)
RETRIES = click.option(
    "--retries",
    type=click.IntRange(*RANGES["retry_max"]),
    help="Retries for errors that can heal [default: 3].",
)
TIMEOUT = click.option(
    "--timeout",
    type=click.IntRange(*RANGES["job_timeout"]),
    help="Seconds a scan may run [default: 3600].",
)
IGNORE_CASE = click.option(
    "-i",
    "--ignore-case",
    is_flag=True,
    help="A line holds a pattern whatever the case of its ASCII letters (as grep -i under "
    "LC_ALL=C).",
)
COUNTS_ONLY = click.option(
    "--counts-only",
    is_flag=True,
    help="Only count the patterns (at grep's speed): no levels, "
    "top messages or times [setting: analysis].",
)


@cli.command()
@PRIORITY
@NODE
@PATTERNS
@IGNORE_CASE
@RETRIES
@click.option(
    "--retry-intervals", metavar="S,S,...", help="Seconds before each retry [default: 10,30,60]."
)
@TIMEOUT
@click.option(
    "--split-size",
    "split_bytes",
    type=click.IntRange(*RANGES["split_bytes"]),
    metavar="BYTES",
    help="Split plain files of twice this size into ranges scanned in parallel; 0: never [default: "
    "64 MiB].",
)
@click.option(
    "--batch-files",
    type=click.IntRange(*RANGES["batch_files"]),
    metavar="N",
    help="Small files per job, at most [default: 500].",
)
@click.option(
    "--force",
    is_flag=True,
    help="Scan every file whole, even one unchanged or only grown since its last scan.",
)
@COUNTS_ONLY
@click.option("--wait", is_flag=True, help="Show progress until every file is finished or failed.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print what was enqueued (and, with --wait, the outcome) as JSON.",
)
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.pass_obj
@one_line_errors
def push(
    settings,
    priority,
    node,
    patterns,
    ignore_case,
    retries,
    retry_intervals,
    timeout,
    split_bytes,
    batch_files,
    force,
    counts_only,
    wait,
    as_json,
    paths,
):
    """Enqueue a scan of each file: PATH is a file, a directory (recursive), a glob, or - for stdin.

    A file pushed again is scanned only for what was appended since its last scan, and not at all
    when unchanged; a rotated file (renamed or compressed) keeps its counts under its new name.

    \b
    Example:
      logjobs push --priority high --pattern ERROR --pattern FATAL '/var/log/app/*.log'
      find /srv/logs -name '*.gz' | logjobs push --priority low -
      logjobs push --node web1 '/var/log/nginx/*.log'     # run by web1's workers only
    """
    submission = Submission(
        paths=paths,
        priority=priority,
        node=node,
        patterns=patterns,
        ignore_case=ignore_case,
        retries=retries,
        retry_intervals=_parse_intervals(retry_intervals),
        timeout=timeout,
        split_size=split_bytes,
        batch_files=batch_files,
        force=force,
        counts_only=counts_only,
    )
    conn = connections.connect(settings.redis_url)
    try:
        submitted = submission.push(conn, settings, stdin=sys.stdin if "-" in paths else None)
    except PushCut as exc:
        fail(f"lost Redis at {redact_url(settings.redis_url)} {exc}")
    pushed = submitted.pushed
    if not as_json:
        click.echo(
            f"enqueued {len(pushed.files)} file(s) into {submitted.queue} as "
            f"{len(pushed.job_ids)} job(s)"
            + (
                f"; skipped {len(pushed.skipped)} already queued or running"
                if pushed.skipped
                else ""
            )
            + (
                f"; {len(pushed.unchanged)} unchanged since their last scan (--force scans them "
                f"again)"
                if pushed.unchanged
                else ""
            )
        )
    if pushed.job_ids:
        _warn_if_nothing_runs(conn, submitted.queue, settings.redis_url)
    outcome = _wait(conn, pushed, quiet=as_json) if wait else None
    if as_json:
        click.echo(_dumps(submitted.to_dict(outcome)))
    if outcome is not None and any(o["status"] != "finished" for o in outcome):
        sys.exit(1)


def _warn_if_nothing_runs(conn, queue, url):
    """Say so (on stderr, and go on) when what is pushed into `queue` would only wait."""
    for reason in unattended(conn, queue, redact_url(url)):
        click.echo(f"logjobs: warning: {reason}", err=True)


def _parse_intervals(text):
    if text is None:
        return None
    try:
        return parse_intervals(text)
    except LogJobsError as exc:
        raise click.BadParameter(str(exc), param_hint="--retry-intervals") from None


def _wait(conn, pushed, quiet):
    """Wait for every pushed file, showing progress on stderr; return each file's outcome."""
    try:
        with Progress(len(pushed.awaited), "scanning") as progress:
            outcome = outcomes.wait(conn, pushed, progress.show)
    except KeyboardInterrupt:
        click.echo(
            "logjobs: stopped waiting; the pushed files stay queued (`logjobs status` and "
            "`logjobs report` follow them)",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    if not quiet:
        done = sum(o["status"] == "finished" for o in outcome)
        click.echo(f"finished {done}, failed {len(outcome) - done}")
        for o in outcome:
            if o["status"] != "finished":
                click.echo(f"  failed: {o['path']}: {o['error'] or ''}")
    return outcome


class Progress:
    """A progress bar with rate and ETA on a terminal; a plain line every few seconds elsewhere."""

    PLAIN_EVERY = 5.0

    def __init__(self, total, label, stream=sys.stderr):
        self.total = total
        self.label = label
        self.stream = stream
        self.started = self.last_line = time.monotonic()
        self.done = 0
        self.tty = stream.isatty()
        self.bar = (
            click.progressbar(
                length=total,
                label=label,
                file=stream,
                show_pos=True,
                show_eta=True,
                item_show_func=lambda rate: rate,
            )
            if self.tty
            else None
        )

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc_info):
        if self.bar:
            self.bar.__exit__(*exc_info)
        elif self.total:
            self._line()

    def rate(self):
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def show(self, done):
        step, self.done = done - self.done, done
        if self.bar:
            self.bar.update(step, f"{self.rate():.0f} files/s")
        elif time.monotonic() - self.last_line >= self.PLAIN_EVERY:
            self._line()

    def _line(self):
        self.last_line = time.monotonic()
        click.echo(
            f"{self.label}: {self.done}/{self.total} files, {self.rate():.0f} files/s",
            file=self.stream,
        )


@cli.command()
@PRIORITY
@NODE
@PATTERNS
@IGNORE_CASE
@RETRIES
@TIMEOUT
@click.option(
    "--debounce",
    type=click.FloatRange(0),
    default=DEFAULT_WATCH_DEBOUNCE,
    show_default=True,
    metavar="SECONDS",
    help="Push a changed file once it has been quiet this long "
    f"(one written without a pause: every {WATCH_MAX_DELAY_PERIODS} periods).",
)
@click.option(
    "--poll",
    type=click.FloatRange(0.05),
    metavar="SECONDS",
    help="Poll every SECONDS instead of using inotify: for network filesystems (NFS, CIFS).",
)
@COUNTS_ONLY
@click.argument("dirs", nargs=-1, required=True, metavar="DIR...")
@click.pass_obj
@one_line_errors
def watch(
    settings,
    priority,
    node,
    patterns,
    ignore_case,
    retries,
    timeout,
    debounce,
    poll,
    counts_only,
    dirs,
):
    """Push the files below each DIR as they are created, written or moved in, until stopped.

    It starts by pushing every file there (push skips those unchanged since their last scan), then
    pushes each changed file once it has been quiet for --debounce seconds, many files in one push.
    Hidden and temporary names (.*, *~, *.swp, *.tmp, *.part) are left out.

    \b
    Example:
      logjobs watch --priority high /var/log/app
      logjobs watch --poll 10 --pattern ERROR --pattern FATAL /mnt/nfs/logs   # network filesystem
    """
    from .watch import Watcher

    submission = Submission(
        paths=dirs,
        priority=priority,
        node=node,
        patterns=patterns,
        ignore_case=ignore_case,
        retries=retries,
        timeout=timeout,
        counts_only=counts_only,
    )
    queue = submission.queue
    conn = connections.connect(settings.redis_url)
    watcher = Watcher(
        dirs,
        functools.partial(submission.enqueue, conn, settings),
        roots=settings.roots,
        debounce=debounce,
        poll=poll,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    watcher.start()
    click.echo(f"watching {' '.join(watcher.dirs)} ({watcher.method}), pushing into {queue}")
    _warn_if_nothing_runs(conn, queue, settings.redis_url)
    watcher.run(stop, on_push=lambda pushed: click.echo(_pushed_line(queue, pushed)))


#: Files a line of `watch` names, at most.
WATCH_NAMES = 3


def _pushed_line(queue, pushed):
    unchanged, skipped = len(pushed.unchanged), len(pushed.skipped)
    names = [scanner.printable(path) for path in itertools.islice(pushed.files, WATCH_NAMES)]
    more = len(pushed.files) - len(names)
    named = f" ({', '.join(names)}{f' and {more} more' if more else ''})" if names else ""
    return (
        f"pushed {len(pushed.files)} file(s){named} into {queue} as {len(pushed.job_ids)} job(s)"
        + (f"; {unchanged} unchanged" if unchanged else "")
        + (f"; {skipped} still queued or running, pushed again later" if skipped else "")
    )


@cli.command()
@click.option("--once", is_flag=True, help="Bring the database up to date with Redis, then exit.")
@click.pass_obj
@one_line_errors
def mirror(settings, once):
    """Keep the status database up to date; the one process that writes it.

    It also runs what plain `rq worker`s leave undone: retries waiting their interval, and the
    recovery of scans whose worker died. Run one (or more: they take turns) next to Redis.

    \b
    Example:
      logjobs --db /var/lib/logjobs/status.db mirror
      logjobs mirror --once && logjobs report --json
    """
    from .mirror import Mirror
    from .models import open_database

    conn = connections.connect(settings.redis_url, check=once)
    open_database(settings.db)
    if once:
        applied = Mirror(conn).once()
        click.echo(f"applied {applied} event(s); {redact_url(settings.db)} is up to date")
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("logjobs").setLevel(min(logging.INFO, logging.getLogger().level))  # -v: DEBUG
    logging.getLogger(__name__).info(
        "mirroring %s into %s", redact_url(settings.redis_url), redact_url(settings.db)
    )
    Mirror(conn).run(stop)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until interrupted.")
@click.option(
    "--interval",
    type=click.FloatRange(0.2),
    default=2.0,
    show_default=True,
    help="Seconds between redraws.",
)
@click.pass_obj
@one_line_errors
def status(settings, as_json, watch, interval):
    """Job counts by state and by queue, and the workers seen, from the status database.

    Live facts come from Redis when it answers: jobs waiting per queue, workers alive. When it
    does not (down, or refusing the credentials), the database's counts are still shown, and the
    exit status is 2.

    \b
    Example:
      logjobs status
      logjobs status --json | jq .jobs.failed
      logjobs status --watch --interval 1
    """
    if not watch:
        doc = _status(settings)
        click.echo(_dumps(doc) if as_json else _format_status(doc))
        if "redis_error" in doc:
            sys.exit(EXIT_REFUSED)
        return
    previous, tty = None, sys.stdout.isatty()
    try:
        while True:
            doc, now = _status(settings), time.monotonic()
            ended = doc["jobs"]["finished"] + doc["jobs"]["failed"]
            doc["rate"] = (ended - previous[1]) / (now - previous[0]) if previous else 0.0
            previous = (now, ended)
            if as_json:
                click.echo(json.dumps(doc))
            elif tty:
                click.clear()
                click.echo(
                    _format_status(doc)
                    + f"\nrate:    {doc['rate']:.1f} files/s ended"
                    + "".join(
                        f"\nfailed:  {f['path']}: {f['error']}" for f in doc["recent_failures"]
                    )
                )
            else:
                jobs = doc["jobs"]
                click.echo(
                    f"{time.strftime('%H:%M:%S')} "
                    + " ".join(f"{k}={v}" for k, v in jobs.items())
                    + f" rate={doc['rate']:.1f}/s"
                )
            time.sleep(interval)
    except KeyboardInterrupt:
        pass


def _status(settings):
    from . import documents

    return _read(settings, documents.status, lambda: connections.connect(settings.redis_url))


def _format_status(doc):
    lines = [
        "files:   "
        + "  ".join(f"{k} {v}" for k, v in doc["jobs"].items())
        + f"  (total {doc['total']})",
        "queues:  " + "  ".join(f"{k} {v}" for k, v in doc["queues"].items()),
    ]
    for node, by_priority in doc["nodes"].items():
        lines.append(f"  {node}: " + "  ".join(f"{k} {v}" for k, v in by_priority.items()))
    if "waiting" in doc:
        lines.append("waiting: " + "  ".join(f"{k} {v}" for k, v in doc["waiting"].items()))
        lines.append(
            f"workers: {len(doc['workers_alive'])} alive"
            + "".join(f"\n  {w['name']} ({w['state']})" for w in doc["workers_alive"])
        )
    else:
        lines.append(f"redis:   unreachable ({doc['redis_error']})")
    return "\n".join(lines)


class Minute(click.ParamType):
    """A time for --since/--until: ISO 8601, or a span back from now (30m, 6h, 2d)."""

    name = "TIME"

    def convert(self, value, param, ctx):
        from . import queries

        try:
            return queries.minute(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SINCE = click.option(
    "--since",
    type=Minute(),
    help="Only lines stamped at or after TIME (ISO 8601, or 30m, 6h, 2d ago).",
)
UNTIL = click.option("--until", type=Minute(), help="Only lines stamped before TIME.")


PATH_GLOB = click.option(
    "--path",
    "path_glob",
    metavar="GLOB",
    help="Only files whose absolute path matches GLOB ('*' spans '/').",
)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per file.")
@click.option("--failed", "failed_only", is_flag=True, help="Only the files whose scan failed.")
@PATH_GLOB
@SINCE
@UNTIL
@click.pass_obj
@one_line_errors
def report(settings, as_json, failed_only, path_glob, since, until):
    """One row per pushed file: status, counts per pattern, lines per level, attempts, error.

    With --since/--until, `levels` counts only the lines stamped in that window, and files without
    such lines are left out; pattern counts stay those of the whole file.

    Without --json, a last line totals the files by status, and their counts and levels.

    \b
    Example:
      logjobs report
      logjobs report --path '/var/log/nginx/*' --failed
      logjobs report --failed --json | jq -r '.[] | "\\(.path): \\(.error)"'
      logjobs report --since 6h --json | jq '.[] | {path, errors: .levels.ERROR}'
    """
    from . import queries

    with _database(settings):
        rows = queries.report(failed_only, since, until, path_glob)  # read as they are written
        if as_json:
            _echo_json_list(rows)
            return
        first = next(rows, None)
        if first is None:
            filters = [
                f
                for f, on in (
                    ("--failed", failed_only),
                    ("--path", path_glob),
                    ("--since", since),
                    ("--until", until),
                )
                if on
            ]
            click.echo(
                f"no file matches {' '.join(filters)}"
                if filters
                else "no files pushed yet (or the mirror has not run: see `logjobs mirror`)"
            )
            return
        _echo_report(itertools.chain([first], rows))


def _echo_json_list(items):
    """Write `json.dumps(list(items), indent=2)`, an item at a time."""
    from .documents import json_list

    for piece in json_list(items):
        click.echo(piece, nl=False)
    click.echo()


def _dumps(doc):
    from .documents import dumps

    return dumps(doc)


#: Rows of `report` its column widths are taken from (the rest stream through at those widths).
REPORT_SAMPLE = 1000
#: A COUNTS or LEVELS column is never wider than this (a longer value pushes PATH along).
REPORT_COLUMN_MAX = 60


def _echo_report(rows):
    """The rows as columns, then their totals. Columns fit the first REPORT_SAMPLE rows: a report
    of a million files still holds only those at once."""
    width = shutil.get_terminal_size((120, 20)).columns
    totals = _ReportTotals()
    cells = ((row, _pairs(row["counts"]), _pairs(row["levels"])) for row in rows)
    sample = list(itertools.islice(cells, REPORT_SAMPLE))
    count_w = min(REPORT_COLUMN_MAX, max([6, *(len(counts) for _, counts, _ in sample)]))
    level_w = min(REPORT_COLUMN_MAX, max([6, *(len(levels) for _, _, levels in sample)]))
    click.echo(f"{'STATUS':9} {'TRIES':>5} {'COUNTS':{count_w}} {'LEVELS':{level_w}} PATH")
    for row, counts, levels in itertools.chain(sample, cells):
        totals.add(row)
        # One line per row: a pattern or a name holding a newline is shown escaped.
        line = (
            f"{row['status']:9} {row['attempts']:>5} {counts:{count_w}} {levels:{level_w}} "
            f"{scanner.printable(row['path'])}"
        )
        if row["error"]:
            line += f"  ({row['error']})"
        click.echo(line[: max(width, 80)] if sys.stdout.isatty() else line)
    click.echo(totals.line())


def _pairs(mapping, empty="-"):
    """{"ERROR": 2, "WARN": 1} as `ERROR=2 WARN=1` (a key holding a newline shown escaped), or
    `empty`."""
    return " ".join(f"{scanner.printable(k)}={n}" for k, n in mapping.items()) or empty


class _ReportTotals:
    """What `report` sums up: files by status, counts per pattern, lines per level."""

    def __init__(self):
        self.statuses = collections.Counter()
        self.counts = collections.Counter()
        self.levels = collections.Counter()

    def add(self, row):
        self.statuses[row["status"]] += 1
        self.counts.update(row["counts"])
        self.levels.update(row["levels"])

    def line(self):
        by_status = " ".join(f"{status} {n}" for status, n in sorted(self.statuses.items()))
        counts = _pairs(self.counts, "")
        levels = _pairs({lv: self.levels[lv] for lv in LEVELS if lv in self.levels}, "")
        return (
            f"total: {self.statuses.total()} file(s) ({by_status})"
            + (f"; counts {counts}" if counts else "")
            + (f"; levels {levels}" if levels else "")
        )


@cli.command()
@PATH_GLOB
@SINCE
@UNTIL
@click.option(
    "--level",
    "levels",
    multiple=True,
    type=click.Choice(LEVELS, case_sensitive=False),
    help="Only messages of this level (repeatable) [default: all templated: ERROR, FATAL, pattern "
    "lines].",
)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="How many messages.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, most frequent first.")
@click.pass_obj
@one_line_errors
def top(settings, path_glob, since, until, levels, limit, as_json):
    """The most frequent ERROR and FATAL messages (and lines with a --pattern), variable parts
    masked.

    Numbers, hex ids, UUIDs, IP addresses, quoted strings and paths are masked, so one message with
    different values is one template; counts are exact over every file (and every part of a split
    one).

    \b
    Example:
      logjobs top
      logjobs top --path '/var/log/nginx/*' --since 2h --level ERROR -n 5
      logjobs top --since 2024-05-01T00:00 --until 2024-05-02 --json
    """
    from . import queries

    found = _read(
        settings, queries.top, path_glob, since, until, [lv.upper() for lv in levels] or None, limit
    )
    if as_json:
        click.echo(_dumps(found))
        return
    if not found:
        click.echo(
            "no messages found (ERROR/FATAL lines, or lines with a pushed --pattern, in finished "
            "scans)"
        )
        return
    width = max(80, shutil.get_terminal_size((120, 20)).columns) if sys.stdout.isatty() else None
    click.echo(f"{'COUNT':>9} {'FILES':>5} {'LEVEL':6} TEMPLATE")
    for m in found:
        line = f"{m['count']:>9} {m['files']:>5} {m['level'] or '-':6} {m['template']}"
        click.echo(line[:width] if width else line)
        example = f"{'':>9} {'':>5} {'':6} e.g. {m['example']}"
        click.echo(example[:width] if width else example)


@cli.command()
@click.argument("key", metavar="PATH|JOB_ID")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
@one_line_errors
def show(settings, key, as_json):
    """One file's scan and every state change of its job: attempts, workers, reasons.

    \b
    Example:
      logjobs show /var/log/app/api.log
      logjobs show lj-3f2a9c0d1e2b4a5c --json
    """
    from . import queries

    doc = _read(settings, queries.show, os.path.abspath(key), key)
    if doc is None:
        raise LogJobsError(
            f"no scan of {scanner.printable(key)} in {redact_url(settings.db)}; "
            "`logjobs report` lists them"
        )
    if as_json:
        click.echo(_dumps(doc))
        return
    for name, value in _shown(doc):
        click.echo(f"{name + ':':10} {value}")
    click.echo("history:")
    for h in doc["history"]:
        click.echo(
            f"  {h['at']}  attempt {h['attempt']}  {h['state']:9} {h['worker'] or ''}"
            + (f"  {h['error']}" if h["error"] else "")
            + ("" if h["applied"] else "  (too late: not applied)")
        )


def _shown(doc):
    """(name, text) of what `show` prints of a file's row."""

    size = doc["bytes"]
    read = doc["scanned"]
    return [
        ("path", scanner.printable(doc["path"])),
        ("status", doc["status"] + (f" (moved to {doc['moved_to']})" if doc["moved_to"] else "")),
        ("error", doc["error"] or "-"),
        (
            "patterns",
            " ".join(map(scanner.printable, doc["patterns"]))
            + (" (case ignored)" if doc["ignore_case"] else ""),
        ),
        ("counts", _pairs(doc["counts"])),
        ("levels", _pairs(doc["levels"])),
        ("format", doc["format"] or ("none fits" if doc["lines"] is not None else "-")),
        ("lines", "-" if doc["lines"] is None else str(doc["lines"])),
        (
            "bytes",
            "-"
            if size is None
            else f"{size}"
            + (f" ({doc['compression']})" if doc["compression"] else "")
            + (f"; this scan read the last {read}" if read is not None and read < size else ""),
        ),
        ("ranges", str(doc["ranges"])),
        ("queue", doc["queue"]),
        ("job_id", doc["job_id"]),
        ("attempts", str(doc["attempts"])),
        ("worker", doc["worker"] or "-"),
        ("enqueued", doc["enqueued_at"] or "-"),
        ("started", doc["started_at"] or "-"),
        ("ended", doc["ended_at"] or "-"),
    ]


@cli.command()
@click.argument("targets", nargs=-1, required=True, metavar="PATH|GLOB|JOB_ID...")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
@one_line_errors
def cancel(settings, targets, as_json):
    """Take back scans that have not ended: of files (a directory: every file below it), of files
    matching a glob ('*' spans '/'), or of jobs.

    A waiting scan will not run, a running one is stopped; a job that also scans other files skips
    these. Their rows become `canceled`, saying who canceled them; a later push scans them again.
    Nothing else is touched: a file whose scan ended stays as it ended. Exit status 1 if a target
    names nothing ever pushed.

    \b
    Example:
      logjobs cancel /srv/archive/
      logjobs cancel '/var/log/**/*.gz' lj-3f2a9c0d1e2b4a5c-0
    """
    from . import cancel as taking_back

    conn = connections.connect(settings.redis_url)
    done = taking_back.cancel(conn, targets, taking_back.who())
    doc = done.to_dict()
    if as_json:
        click.echo(_dumps(doc))
    else:
        click.echo(
            f"canceled {len(doc['canceled'])} file(s): {len(doc['queued'])} waiting, "
            f"{len(doc['stopped'])} in running jobs (stopped, or skipped)"
        )
        _echo_some(doc["canceled"])
        if doc["ended"]:
            click.echo(f"left as they ended: {len(doc['ended'])} file(s)")
            _echo_some(doc["ended"])
    for target in done.unknown:
        click.echo(f"logjobs: nothing pushed matches {scanner.printable(target)}", err=True)
    sys.exit(1 if done.unknown else 0)


@cli.command()
@click.argument("targets", nargs=-1, required=True, metavar="PATH|GLOB...")
@click.pass_obj
@one_line_errors
def forget(settings, targets):
    """Drop files' rows and history from the status database, and what Redis keeps to continue
    their scans (the next push scans them whole).

    A directory stands for every file below it; a glob's '*' spans '/'. Files still being scanned
    are left: cancel them first. The mirror drops them; this waits until it has (10 s at most).
    Exit status 1 if a target names no file in the database, or a file was left.

    \b
    Example:
      logjobs forget /tmp/logjobs-selftest-*
      logjobs forget /var/log/old-app/
    """
    from . import events, queries
    from .cancel import target_glob
    from .defaults import FINAL_STATES, MOVED
    from .store import MirrorPresence

    found, unknown = {}, []
    for target in targets:
        states = _read(settings, queries.states, target_glob(target))
        found.update(states)
        if not states:
            unknown.append(target)
    busy = sorted(p for p, status in found.items() if status not in (*FINAL_STATES, MOVED))
    paths = sorted(p for p, status in found.items() if status in (*FINAL_STATES, MOVED))
    conn = connections.connect(settings.redis_url)
    events.forget(conn, paths)
    if busy:
        click.echo(
            f"logjobs: {len(busy)} file(s) still being scanned, left (`logjobs cancel` them "
            f"first): {', '.join(map(scanner.printable, busy[:3]))}",
            err=True,
        )
    for target in unknown:
        name = scanner.printable(target)
        click.echo(f"logjobs: no file in the database matches {name}", err=True)
    if paths and MirrorPresence.alive(conn) is None:
        click.echo(f"asked to forget {len(paths)} file(s): they go once `logjobs mirror` runs")
    elif paths:
        # The mirror applies events in order: once the last path's row is gone, so are the rest.
        deadline = time.monotonic() + FORGET_WAIT
        while _read(settings, queries.states, glob.escape(paths[-1])):
            if time.monotonic() > deadline:
                raise LogJobsError(
                    f"asked to forget {len(paths)} file(s), but the mirror has not dropped them "
                    f"in {FORGET_WAIT} s: is it behind? (`logjobs status`)"
                )
            time.sleep(0.2)
        click.echo(f"forgot {len(paths)} file(s)")
    sys.exit(1 if unknown or busy else 0)


#: Seconds `forget` waits for the mirror to drop the rows.
FORGET_WAIT = 10
#: Paths a command lists before "and N more".
LISTED = 10


def _echo_some(paths):
    for path in paths[:LISTED]:
        click.echo(f"  {scanner.printable(path)}")
    if len(paths) > LISTED:
        click.echo(f"  and {len(paths) - LISTED} more")


def _read(settings, view, *args):
    with _database(settings):
        return view(*args)


@contextlib.contextmanager
def _database(settings):
    """The status database, open (for reading) inside the block."""
    from .models import open_database

    database = open_database(settings.db, create=False)
    with database.connection_context():
        yield


@cli.command()
@click.option("--host", default=DEFAULT_DASHBOARD_HOST, show_default=True, help="Address to bind.")
@click.option(
    "--port", default=DEFAULT_DASHBOARD_PORT, show_default=True, type=click.IntRange(1, 65535)
)
@click.pass_obj
@one_line_errors
def dashboard(settings, host, port):
    """Serve the web UI: rq-dashboard (live queues, workers, jobs) plus logjobs' own pages.

    \b
    Example:
      logjobs dashboard                      # http://127.0.0.1:9181/
      LOGJOBS_DASHBOARD_USER=ops LOGJOBS_DASHBOARD_PASSWORD=... logjobs dashboard --host 0.0.0.0
    """
    from .web import serve

    serve(settings, host, port)


@cli.command()
@click.option(
    "--chaos",
    is_flag=True,
    help="Also SIGKILL a worker mid-scan and check that its job is recovered.",
)
@click.option(
    "--timeout",
    type=click.IntRange(10),
    default=120,
    show_default=True,
    help="Seconds to wait for the probes.",
)
@click.pass_obj
@one_line_errors
def selftest(settings, chaos, timeout):
    """Check this deployment's promises: probe files counted right, mirrored, recovered after a
    crash.

    It runs its own `rq worker`s on this host, on a queue of their own, against the configured
    Redis; with --chaos it kills one mid-scan. A mirror must be running. Exit status 0 when every
    check passed.

    \b
    Example:
      logjobs selftest
      LOGJOBS_CONFIG=/etc/logjobs/logjobs.ini logjobs selftest --chaos
    """
    from . import selftest as probes
    from .queries import show

    if settings.redis_url.startswith(connections.SENTINEL_SCHEME):
        raise LogJobsError(
            "selftest starts `rq worker --url ...`, which takes no Sentinel URL; "
            "point --redis-url at the current master"
        )
    conn = connections.connect(settings.redis_url)

    def reader(path):
        """The probe's row, once the mirror has made the database (it may be starting, too)."""
        try:
            return _read(settings, show, path)
        except NoDatabase:
            return None

    checks = probes.run(conn, settings.redis_url, reader, chaos=chaos, timeout=timeout)
    for check in checks:
        click.echo(f"[{'PASS' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
    sys.exit(0 if all(c.ok for c in checks) else 1)


@cli.command()
@click.option(
    "--test",
    "test_file",
    metavar="FILE",
    help="Show which format FILE is read with, and how its first lines read.",
)
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="How many lines --test shows.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@one_line_errors
def formats(settings, test_file, lines, as_json):
    """The log formats a scan reads lines with: the config file's [format NAME], then the built-in
    ones.

    A scan picks the one that fits the head of its file; a line it does not fit is read by the
    generic rules (see docs/cli.md).

    \b
    Example:
      logjobs formats
      logjobs formats --test /var/log/nginx/error.log -n 5
    """
    from . import formatprobe
    from .formats import known as known_formats

    known = known_formats(settings.formats)
    if test_file is None:
        rows = [{"name": f.name, "builtin": f.builtin, "title": f.title} for f in known]
        if as_json:
            click.echo(_dumps(rows))
            return
        for row in rows:
            click.echo(f"{row['name']:16} {'' if row['builtin'] else '(config) '}{row['title']}")
        return
    doc = formatprobe.probe(test_file, known, lines, settings.roots)
    if as_json:
        click.echo(_dumps(doc))
        return
    click.echo(f"format: {doc['format'] or 'none fits: the generic rules read every line'}")
    for line in doc["lines"]:
        fitted = "" if line["fits"] else "  (generic rules)"
        click.echo(
            f"{line['level'] or '-':6} {line['minute'] or '-':16} {line['template']}{fitted}"
        )


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--node",
    metavar="NAME",
    help="Also take the jobs pushed with --node NAME (this host's own logs).",
)
@click.argument("rq_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def worker(settings, node, rq_args):
    """Run `rq worker high default low` against the configured Redis (a convenience, never
    required), with the worker and job classes that keep it safe (RQ_WORKER_CLASS, RQ_JOB_CLASS: see
    rqsafe).

    With --node NAME it runs `rq worker NAME.high high NAME.default default NAME.low low`: the
    node's own jobs and the shared ones, priority first. Extra arguments go to `rq worker` as they
    are.

    \b
    Example:
      logjobs --redis-url redis://queue-host:6379/0 worker
      logjobs worker --node web1 --burst
    """
    try:
        queue_args = queues.node_worker_queues(node) if node else list(QUEUES)
    except LogJobsError as exc:
        fail(str(exc))
    command = queues.rq_command("worker", *rq_args, *queue_args)
    # The URL goes in the environment, where `rq worker` reads it too: on the command line, `ps`
    # would show its password to every user of the host.
    os.execve(
        command[0], command, dict(environ_with_worker_classes(), RQ_REDIS_URL=settings.redis_url)
    )
