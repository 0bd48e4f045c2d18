"""Log formats as data: where a line's time, level and message are, in the logs people actually
have.

A Format is a definition, in the spirit of lnav's format files or Fluent Bit's parsers: a regular
expression with named groups (`time`, to the minute, and maybe `zone`; `level`; `message`), the
layout of its time, and what its level words or letters mean. Some are built in (BUILTIN); a user
adds theirs in the config file (`[format NAME]` sections: see `from_config`). A scan picks the one
that fits the head of its file (`detect`), and its lines are read with it; a line it does not fit (a
stack trace, a line of another format) is read by the analysis' generic rules. A file no format fits
is read by those rules alone.

Pure: no Redis, RQ or Peewee.
"""

import dataclasses
import datetime
import functools
import re
from collections.abc import Iterable, Mapping

from .exceptions import ConfigError

#: Bytes of a file's head that a scan reads to detect its format.
DETECT_BYTES = 64 << 10
#: Lines of a file's head that `detect` looks at, at most.
DETECT_LINES = 200
#: The share of those lines a format must fit to be taken.
DETECT_SHARE = 0.5

#: Level spellings most formats use (lower case; a format's own are looked up lower-cased too).
STANDARD_LEVELS = {
    **dict.fromkeys(("fatal", "critical", "crit", "emergency", "emerg", "alert", "panic"), "FATAL"),
    **dict.fromkeys(("error", "err", "severe", "eror"), "ERROR"),
    **dict.fromkeys(("warning", "warn"), "WARN"),
    **dict.fromkeys(("information", "info", "notice", "informational"), "INFO"),
    **dict.fromkeys(("debug", "dbg", "fine", "config", "verbose"), "DEBUG"),
    **dict.fromkeys(("trace", "finer", "finest"), "TRACE"),
}
_LEVEL_NAMES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
_UTC = ("", "Z", "UTC", "GMT")


@dataclasses.dataclass(frozen=True)
class Format:
    """A log format: how to find a line's time, level and message.

    `pattern` is a regular expression over one line, from its start, with the named groups `time`
    (the time up to its minute at least, read with the strptime layout `time_layout`, or "epoch"
    for Unix seconds), `zone` (optional: Z, UTC or +hh:mm), `level` (optional) and `message`.
    `levels` maps its level spellings (lower case) to logjobs' levels; without it, the standard
    spellings. A line without a level takes `default_level`.

    A format whose records are two lines (Java util logging: a time, then `LEVEL: message`) has a
    `header` too: the pattern of a record's first line, with the time groups; `pattern` is then
    that of its second line, with `level` and `message`, and takes its time from the line before
    it when that is a header.
    """

    name: str
    title: str
    pattern: str
    time_layout: str
    levels: Mapping[str, str] | None = None
    default_level: str | None = None
    header: str | None = None
    quoted: bool = False  # the message is a quoted, escaped string (JSON, logfmt): read it unquoted
    # the message is an access log's `METHOD path protocol" status`: templated as the method, the
    # path (its numbers and ids masked) and the status
    request: bool = False
    # the message is a log line of its own (a container's): where the format has no level, the
    # generic rules read the level, and the message to template, in it
    inner: bool = False
    builtin: bool = True

    def __post_init__(self):
        groups: set[str] = set()
        for pattern in filter(None, (self.pattern, self.header)):
            try:
                groups |= set(re.compile(pattern.encode()).groupindex)
            except re.error as exc:
                raise ConfigError(f"format {self.name}: bad pattern: {exc}") from None
        missing = {"time", "message"} - groups
        if missing:
            raise ConfigError(
                f"format {self.name}: its pattern has no group named {sorted(missing)[0]!r}"
            )
        try:
            self.bulk  # noqa: B018 - a pattern that compiles alone may not inside the bulk one
        except re.error as exc:
            raise ConfigError(f"format {self.name}: bad pattern: {exc}") from None
        for level in (self.levels or {}).values():
            if level not in _LEVEL_NAMES:
                raise ConfigError(
                    f"format {self.name}: unknown level {level!r}; use one of "
                    f"{', '.join(_LEVEL_NAMES)}"
                )

    @functools.cached_property
    def regex(self) -> re.Pattern:
        """The pattern over one line, anchored at its start."""
        return re.compile(self.pattern.encode())

    @functools.cached_property
    def header_regex(self) -> re.Pattern | None:
        """The pattern of a record's first line, for a format of two-line records."""
        return re.compile(self.header.encode()) if self.header else None

    @functools.cached_property
    def bulk(self) -> re.Pattern:
        """The pattern over a chunk of lines (data[start] a newline): one match per line, with group
        `other` holding a line the format does not fit, and group `header` a record's first line
        for a format of two-line records. Groups: header, line, time, year, zone, level, message,
        other (empty where the format has none)."""
        alternatives = [rf"(?P<line>{_known_groups(self.pattern)}[^\n]*)", r"(?P<other>[^\n]*)"]
        if self.header:
            alternatives.insert(0, rf"(?P<header>{_known_groups(self.header)}[^\n]*)")
        rx = r"\n(?:" + "|".join(alternatives) + ")"
        for name in _BULK_GROUPS:
            if f"(?P<{name}>" not in rx:
                rx += f"(?P<{name}>)"
        return re.compile(rx.encode())

    @functools.cached_property
    def bulk_groups(self) -> tuple[int, ...]:
        """The indexes, in bulk's findall tuples, of _BULK_GROUPS."""
        return tuple(self.bulk.groupindex[name] - 1 for name in _BULK_GROUPS)

    def clean(self, message: bytes) -> bytes:
        """The message as its template is made of: unquoted and unescaped when the format quotes
        it."""
        if not self.quoted:
            return message
        if message[:1] == b'"' and message[-1:] == b'"':
            message = message[1:-1]
        return message.replace(b'\\"', b'"').replace(b"\\n", b" ").replace(b"\\t", b" ").strip()

    @functools.cached_property
    def level_of(self) -> dict:
        """{spelling as bytes, as found, lower- and upper-cased: level}."""
        table = {**STANDARD_LEVELS, **(self.levels or {})}
        out = {}
        for word, level in table.items():
            for spelling in {word, word.upper(), word.capitalize()}:
                out[spelling.encode()] = level
        return out

    def level(self, word: bytes) -> str | None:
        if not word:
            return self.default_level
        return self.level_of.get(word) or self.level_of.get(word.lower()) or self.default_level

    def minute(
        self, time: bytes, zone: bytes, year: int | None, latest: datetime.datetime | None
    ) -> str:
        """The UTC minute "YYYY-MM-DDTHH:MM" of a time (and zone) the pattern captured, or ""; a
        time without a year is of `year`, or of the year before if that puts it after `latest`."""
        return _minute(self.time_layout, time, zone, year, latest)

    @functools.cached_property
    def _fit(self) -> re.Pattern:
        """What `fits` counts: a line the format fits (a two-line record: both), no group kept."""
        line = _without_groups(self.pattern)
        if self.header:
            line = _without_groups(self.header) + r"[^\n]*\n" + line
        return re.compile(rf"\n(?:{line})".encode())

    def fits(self, text: bytes) -> int:
        """How many of the lines of `text` (text[0] a newline) the format fits (a two-line record
        counts two)."""
        return len(self._fit.findall(text)) * (2 if self.header else 1)

    def match(self, line: bytes):
        """The (level word, time, zone, message) the format finds in one line (b"" for what it has
        not: a two-line record's second line has no time), as `bulk` finds them in a chunk; None
        if the format does not fit it."""
        m = self.regex.match(line)
        if not m:
            return None
        groups = m.groupdict(b"")
        return groups.get("level", b""), _time(groups), groups.get("zone", b""), groups["message"]

    def header_stamp(self, line: bytes) -> tuple[bytes, bytes] | None:
        """The (time, zone) of a two-line record's first line, or None if `line` is none."""
        m = self.header_regex.match(line) if self.header_regex is not None else None
        return (_time(m.groupdict(b"")), m.groupdict(b"").get("zone", b"")) if m else None


#: The groups of a format's pattern that a scan reads (others are made non-capturing).
_GROUPS = {"time", "year", "zone", "level", "message"}
#: The groups of `Format.bulk`, in the order of `Format.bulk_groups`.
_BULK_GROUPS = ("header", "line", "time", "year", "zone", "level", "message", "other")


def _without_groups(pattern: str) -> str:
    return re.sub(r"\(\?P<\w+>", "(?:", pattern)


def _known_groups(pattern: str) -> str:
    return re.sub(r"\(\?P<(\w+)>", lambda m: f"(?P<{m[1]}>" if m[1] in _GROUPS else "(?:", pattern)


def _time(groups: dict) -> bytes:
    """The time a match found: its `time` group, and its `year` where that stands apart."""
    return groups.get("time", b"") + (b" " + groups["year"] if groups.get("year") else b"")


@functools.lru_cache(maxsize=50_000)
def _minute(layout, time: bytes, zone: bytes, year, latest) -> str:
    try:
        text = time.decode("ascii")
        if not text:
            return ""
        if layout == "epoch":
            seconds = int(text[:10])
            t = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=seconds)
        else:
            if "T" not in layout:  # an ISO time with its T, for a layout written with a blank
                text = text.replace("T", " ")
            t = datetime.datetime.strptime(" ".join(text.split()), layout)
            if "%y" not in layout and "%Y" not in layout:
                if not year:
                    return ""
                t = t.replace(year=year)
                if latest is not None and t > latest:
                    t = t.replace(year=year - 1)
        zone_text = zone.decode("ascii").strip()
        if zone_text not in _UTC:
            sign = -1 if zone_text[0] == "+" else 1
            digits = zone_text[1:].replace(":", "")
            offset = datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
            if offset > datetime.timedelta(hours=24):
                return ""
            t = t + sign * offset
    except (ValueError, UnicodeDecodeError, OverflowError, IndexError):
        return ""
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}"


def alternation(words) -> bytes:
    """The words as a trie-shaped alternation, longest first: sre rejects most positions on one
    byte."""
    trie: dict = {}
    for word in words:
        node = trie
        for i in range(len(word)):
            node = node.setdefault(word[i : i + 1], {})
        node[b""] = {}

    def depth(node):
        return max((1 + depth(child) for key, child in node.items() if key), default=0)

    def emit(node):
        alts = [
            re.escape(key) + emit(child)
            for key, child in sorted(node.items(), key=lambda kv: -depth(kv[1]))
            if key
        ]
        alts += [b""] * (b"" in node)
        return alts[0] if len(alts) == 1 else b"(?:" + b"|".join(alts) + b")"

    return emit(trie)


# -- the built-in formats -------------------------------------------------------------------------
# Each pattern reads a line from its start. `time` stops at the minute: the seconds and what follows
# are matched outside it, so that a minute's lines share one time to read.

_S = r"[:.,\d]*"  # the seconds and their fraction, after a time's minute
_ISO = r"(?P<time>\d{4}-\d\d-\d\d[T ]\d\d:\d\d)" + _S + r"(?P<zone>Z|[+-]\d\d:?\d\d|)"
#: A standard level word, in upper, lower or capitalised case (a trie: faster than (?i:...)).
_LEVELS_RX = (
    "(?P<level>"
    + alternation(
        spelling.encode()
        for word in (
            "TRACE DEBUG INFO NOTICE WARN WARNING ERROR FATAL SEVERE CRITICAL CONFIG FINEST "
            "FINER FINE"
        ).split()
        for spelling in (word, word.lower(), word.capitalize())
    ).decode()
    + ")"
)
_LOGCAT = {
    "v": "TRACE",
    "d": "DEBUG",
    "i": "INFO",
    "w": "WARN",
    "e": "ERROR",
    "f": "FATAL",
    "a": "FATAL",
}
_KLOG = {"i": "INFO", "w": "WARN", "e": "ERROR", "f": "FATAL"}
_POSTGRES = {
    "log": "INFO",
    "statement": "INFO",
    "detail": "INFO",
    "hint": "INFO",
    "context": "INFO",
    "panic": "FATAL",
    **{f"debug{n}": "DEBUG" for n in range(1, 6)},
}
_MYSQL = {"note": "INFO", "system": "INFO"}
_REDIS = {".": "DEBUG", "-": "DEBUG", "*": "INFO", "#": "WARN"}
_APACHE = {**{f"trace{n}": "TRACE" for n in range(1, 9)}}

BUILTIN = (
    Format(
        "log4j-yymmdd",
        "log4j/logback: yyMMdd HHmmss [pid] LEVEL logger: message (Hadoop HDFS)",
        r"(?P<time>\d{6} \d{4})\d\d(?: \d+)? " + _LEVELS_RX + r" (?:[\w.$-]+: )?(?P<message>.*)",
        "%y%m%d %H%M",
    ),
    Format(
        "log4j-yy/mm/dd",
        "log4j/logback: yy/MM/dd HH:mm:ss LEVEL logger: message (Spark)",
        r"(?P<time>\d\d/\d\d/\d\d \d\d:\d\d)"
        + _S
        + r" "
        + _LEVELS_RX
        + r" (?:[\w.$-]+: )?(?P<message>.*)",
        "%y/%m/%d %H:%M",
    ),
    Format(
        "log4j-zookeeper",
        "log4j: ISO time - LEVEL [thread] - message (ZooKeeper)",
        # the thread's brackets may hold brackets ([QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181])
        _ISO
        + r" +- +"
        + _LEVELS_RX
        + r" +\[(?:[^\]\n]*+\][^ \n])*+[^\]\n]*+\] +- +(?P<message>.*)",
        "%Y-%m-%d %H:%M",
    ),
    Format(
        "windows-cbs",
        "Windows CBS log: yyyy-MM-dd hh:mm:ss, Level  component  message",
        r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d):\d\d, (?P<level>\w+) +\w+ +(?P<message>.*)",
        "%Y-%m-%d %H:%M",
    ),
    Format(
        "log4j",
        "log4j/logback/Python logging: ISO time [thread] LEVEL [thread] logger: message",
        _ISO
        + r" +(?:\[[^\]\n]{0,200}\] +)?(?:- +)?"
        + _LEVELS_RX
        + r"\]? +(?:- +)?(?:\[[^\]\n]{0,200}\] +)?(?:[\w.$<>-]{1,200}(?:\[\d+\])?(?::| -) +|- "
        r"+)?(?P<message>.*)",
        "%Y-%m-%d %H:%M",
    ),
    Format(
        "python",
        "Python logging: time - name - LEVEL - message",
        _ISO + r" - [^\n]{1,200}? - " + _LEVELS_RX + r" - (?P<message>.*)",
        "%Y-%m-%d %H:%M",
    ),
    Format(
        "logcat",
        "Android logcat -v threadtime: MM-dd HH:mm:ss.SSS pid tid L tag: message",
        r"(?P<time>\d\d-\d\d \d\d:\d\d)"
        + _S
        + r" +\d+ +\d+ (?P<level>[VDIWEFA]) (?:[^:\n]{0,200}?): (?P<message>.*)",
        "%m-%d %H:%M",
        levels=_LOGCAT,
    ),
    Format(
        "logcat-brief",
        "Android logcat -v brief: L/tag(pid): message (no time)",
        r"(?P<level>[VDIWEFA])/[^(\n]{1,200}\( *\d+\): (?P<message>.*)(?P<time>)",
        "",
        levels=_LOGCAT,
    ),
    Format(
        "klog",
        "Go klog/glog: Lmmdd hh:mm:ss.uuuuuu threadid file:line] message",
        r"(?P<level>[IWEF])(?P<time>\d{4} \d\d:\d\d)"
        + _S
        + r" +\d+ [^\]\n]{1,200}\] (?P<message>.*)",
        "%m%d %H:%M",
        levels=_KLOG,
    ),
    Format(
        "logfmt",
        "logrus/slog/zap text (logfmt): time=... level=... msg=...",
        r"(?:ts|time|timestamp)=\"?(?P<time>\d{4}-\d\d-\d\d[T ]\d\d:\d\d)"
        + _S
        + r"(?P<zone>Z|[+-]\d\d:?\d\d|)\"? +(?:[^\n]*? "
        r")?(?:level|lvl|severity)=\"?(?P<level>\w+)\"?"
        + r"(?: +(?:[^\n]*? )?(?:msg|message)=(?P<message>\"(?:[^\"\\\n]|\\.)*\"|\S*))?",
        "%Y-%m-%d %H:%M",
        quoted=True,
    ),
    Format(
        "zap-console",
        "zap's console encoder: ISO time<TAB>LEVEL<TAB>logger<TAB>message",
        _ISO + r"\t" + _LEVELS_RX + r"\t(?:[^\t\n]{1,200}\t)?(?P<message>[^\t\n]*)",
        "%Y-%m-%d %H:%M",
    ),
    Format(
        "jul",
        "Java util logging (SimpleFormatter): a time and source line, then LEVEL: message",
        r"(?P<level>SEVERE|WARNING|INFO|CONFIG|FINEST|FINER|FINE): (?P<message>.*)",
        "%b %d, %Y %I:%M:%S %p",
        header=r"(?P<time>[A-Z][a-z]{2} \d\d?, \d{4} \d\d?:\d\d:\d\d (?:AM|PM)) \S",
    ),
    Format(
        "syslog-5424",
        "syslog RFC 5424: <PRI>1 time host app procid msgid [sd] message",
        r"<(?P<level>\d{1,3})>1 "
        + _ISO
        + r" \S+ \S+ \S+ \S+ (?:-|(?:\[(?:[^\]\\\n]|\\.)*\])+) ?(?P<message>.*)",
        "%Y-%m-%dT%H:%M",
        levels={str(p): _LEVEL_NAMES[(5, 5, 5, 4, 3, 2, 2, 1)[p % 8]] for p in range(192)},
    ),
    Format(
        "syslog",
        "syslog RFC 3164 (or a file of syslogd's): Mmm dd hh:mm:ss host prog[pid]: message",
        r"(?:<(?P<level>\d{1,3})>)?(?P<time>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d):\d\d \S+ (?:[^:\n "
        r"]{1,200}: )?(?P<message>.*)",
        "%b %d %H:%M",
        default_level="INFO",
        levels={str(p): _LEVEL_NAMES[(5, 5, 5, 4, 3, 2, 2, 1)[p % 8]] for p in range(192)},
    ),
    Format(
        "cri",
        "Kubernetes CRI container log: time stream P|F message",
        _ISO.replace("(?P<zone>Z|[+-]\\d\\d:?\\d\\d|)", "(?P<zone>Z|[+-]\\d\\d:?\\d\\d)")
        + r" (?:stdout|stderr) [PF] (?P<message>.*)",
        "%Y-%m-%dT%H:%M",
        inner=True,
    ),
    Format(
        "docker-json",
        'Docker json-file: {"log": message, "stream": ..., "time": ...}',
        r"\{\"log\":\"(?P<message>(?:[^\"\\\n]|\\.)*)\",\"stream\":\"\w+\",\"time\":\""
        r"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d)" + _S + r"(?P<zone>Z|[+-]\d\d:\d\d)\"\}",
        "%Y-%m-%dT%H:%M",
        quoted=True,
        inner=True,
    ),
    Format(
        "journald-json",
        "journald's JSON export (journalctl -o json): PRIORITY, __REALTIME_TIMESTAMP, MESSAGE",
        r"\{(?=[^\n]*\"__REALTIME_TIMESTAMP\" ?: ?\"(?P<time>\d{10})\d*\")(?=[^\n]*\"PRIORITY\" ?: "
        r"?\"(?P<level>\d)\")?"
        r"(?=[^\n]*\"MESSAGE\" ?: ?\"(?P<message>(?:[^\"\\\n]|\\.)*)\")?",
        "epoch",
        levels={str(p): _LEVEL_NAMES[(5, 5, 5, 4, 3, 2, 2, 1)[p]] for p in range(8)},
        quoted=True,
    ),
    Format(
        "clf",
        'nginx/Apache access log (common or combined): host ident user [time] "request" status',
        r"\S+ \S+ \S+ \[(?P<time>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d):\d\d (?P<zone>[+-]\d{4})\] "
        r"\"(?P<message>[^\"\n]*\" (?P<level>\d)\d\d)",
        "%d/%b/%Y:%H:%M",
        levels={"1": "INFO", "2": "INFO", "3": "INFO", "4": "WARN", "5": "ERROR"},
        request=True,
    ),
    Format(
        "nginx-error",
        "nginx error log: yyyy/MM/dd HH:mm:ss [level] pid#tid: message",
        r"(?P<time>\d{4}/\d\d/\d\d \d\d:\d\d):\d\d \[(?P<level>\w+)\] \d+#\d+: (?:\*\d+ "
        r")?(?P<message>.*)",
        "%Y/%m/%d %H:%M",
    ),
    Format(
        "apache-error",
        "Apache error log: [ctime] [module:level] [pid ...] message",
        r"\[(?:[A-Z][a-z]{2} )(?P<time>[A-Z][a-z]{2} \d\d \d\d:\d\d):\d\d(?:\.\d+)? "
        r"(?P<year>\d{4})\] "
        r"\[(?:\w+:)?(?P<level>\w+)\] (?:\[pid [^\]\n]*\] )?(?:\[client [^\]\n]*\] "
        r")?(?P<message>.*)",
        "%b %d %H:%M %Y",
        levels=_APACHE,
    ),
    Format(
        "postgresql",
        "PostgreSQL: time zone [pid] LEVEL:  message",
        r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d)" + _S + r" ?(?P<zone>[A-Z]{2,5}|[+-]\d\d(?::?\d\d)?|)"
        r" \[\d+\](?:[^\n]{0,200}? "
        r")?(?P<level>LOG|DEBUG[1-5]|INFO|NOTICE|WARNING|ERROR|FATAL|PANIC|STATEMENT|DETAIL|HINT"
        r"|CONTEXT):  (?P<message>.*)",
        "%Y-%m-%d %H:%M",
        levels=_POSTGRES,
    ),
    Format(
        "mysql",
        "MySQL error log: time thread [Level] [code] [subsystem] message",
        _ISO + r" \d+ \[(?P<level>Note|Warning|Error|System|ERROR|Warn)\] (?:\[[^\]\n]*\] "
        r"){0,2}(?P<message>.*)",
        "%Y-%m-%d %H:%M",
        levels=_MYSQL,
    ),
    Format(
        "redis",
        "Redis's own log: pid:role dd Mmm yyyy hh:mm:ss.mmm L message",
        r"\d+:[XCSM] (?P<time>\d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d):\d\d(?:\.\d+)? (?P<level>[.*#-]) "
        r"(?P<message>.*)",
        "%d %b %Y %H:%M",
        levels=_REDIS,
    ),
    Format(
        "healthapp",
        "HealthApp (Loghub): yyyyMMdd-HH:mm:ss:SSS|component|pid|message",
        r"(?P<time>\d{8}-\d\d?:\d\d?):\d\d?:\d{1,3}\|[^|\n]{1,200}\|\d+\|(?P<message>.*)",
        "%Y%m%d-%H:%M",
    ),
)


def known(configured: Iterable[Format] = ()) -> list[Format]:
    """The formats a scan chooses from: a config file's first (a user's format for their own logs
    is likelier to be the right one where a built-in one fits as well), then the built-in ones."""
    return [*configured, *BUILTIN]


def builtin(name: str) -> Format:
    return next(f for f in BUILTIN if f.name == name)


def detect(head: bytes, formats: Iterable[Format]) -> Format | None:
    """The format that fits the most of the first DETECT_LINES whole lines of `head` (at least
    DETECT_SHARE of them, not counting indented lines: a stack trace's), earlier ones first in a
    tie; None when none does. A two-line record fits when both its lines do."""
    formats = list(formats)
    end = head.rfind(b"\n") + 1
    lines = [
        line
        for line in (head[:end] if end else head).split(b"\n")[:DETECT_LINES]
        if line.strip() and line[:1] not in b" \t"
    ]
    if not lines:
        return None
    text = b"\n" + b"\n".join(lines) + b"\n"
    best, best_fit = None, 0
    for fmt in formats:
        fit = fmt.fits(text)
        if fit > best_fit:
            best, best_fit = fmt, fit
    return best if best_fit >= max(1, DETECT_SHARE * len(lines)) else None


def from_config(sections: Mapping[str, Mapping[str, str]]) -> list[Format]:
    """A user's formats, from the `[format NAME]` sections of a config file: `pattern` (a regular
    expression with named groups time, message, and maybe zone and level), `time` (the strptime
    layout of the time group, or epoch), and maybe `levels` ("E=ERROR, W=WARN"), `default_level`,
    `title`. ConfigError, naming the section, for a bad one."""
    found = []
    for section, values in sections.items():
        name = section.removeprefix("format").strip()
        unknown = set(values) - {"pattern", "time", "levels", "default_level", "title"}
        if not name or unknown:
            raise ConfigError(
                f"[{section}]: "
                + (
                    f"unknown key {sorted(unknown)[0]!r}; known: pattern, time, "
                    "levels, default_level, title"
                    if name
                    else "name the format: [format NAME]"
                )
            )
        needs = {
            "pattern": "a regular expression with the named groups time and message",
            "time": "the strptime layout of its time group, or epoch",
        }
        for key, what in needs.items():
            if not values.get(key):
                raise ConfigError(f"[{section}]: no {key} ({what})")
        levels = {}
        for pair in filter(
            None, (p.strip() for p in values.get("levels", "").replace(",", " ").split())
        ):
            word, sep, level = pair.partition("=")
            if not sep or level.upper() not in _LEVEL_NAMES:
                raise ConfigError(
                    f"[{section}]: levels: {pair!r} is not WORD=LEVEL with LEVEL one of "
                    f"{', '.join(_LEVEL_NAMES)}"
                )
            levels[word.lower()] = level.upper()
        default = values.get("default_level", "").upper() or None
        if default is not None and default not in _LEVEL_NAMES:
            raise ConfigError(
                f"[{section}]: default_level {default!r} is none of {', '.join(_LEVEL_NAMES)}"
            )
        try:
            fmt = Format(
                name,
                values.get("title", f"{name} (from the config file)"),
                values["pattern"],
                values["time"],
                levels or None,
                default,
                builtin=False,
            )
        except ConfigError as exc:
            raise ConfigError(f"[{section}]: {exc}") from None
        _check_layout(section, fmt.time_layout)
        found.append(fmt)
    return found


def _check_layout(section, layout):
    if layout == "epoch":
        return
    try:
        datetime.datetime(2024, 5, 1, 12, 3).strftime(layout)
    except ValueError as exc:
        raise ConfigError(f"[{section}]: time {layout!r} is no strptime layout: {exc}") from None
    if "%M" not in layout:
        raise ConfigError(
            f"[{section}]: time {layout!r} has no minute (%M): its lines would get no minute"
        )
