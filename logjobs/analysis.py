"""Levels, per-minute counts and the most frequent messages of the lines a scan reads.

Pure: no Redis, RQ or Peewee. An Analyzer is fed the byte stream of a file or of a line-aligned byte
range, in pieces of any size, and returns an Analysis. Other piece sizes give the same Analysis, and
the Analyses of contiguous ranges, merged in order, equal the Analysis of the whole file, as long as
no range went over MAX_TEMPLATES templates.

Levels. These spellings, in UPPER, Capitalised or lower case, map to LEVELS:
    FATAL  fatal critical crit emergency emerg alert panic
    ERROR  error err severe
    WARN   warning warn
    INFO   information info notice
    DEBUG  debug dbg fine
    TRACE  trace finer finest
A word is the level of its line only where it stands as one:
  - A line of the file's format (see below): the level its format reads, if any.
  - A text line: after a leading timestamp, the first level word among its next three tokens
    (the ones before it are host, process, thread, logger...; "-" and "|" separators do not
    count); without a timestamp, only the first token. Bare or wrapped as [error], [core:error],
    (error), <error>, level=error, and followed by a blank, ":" or the line end. So
    `ERROR:root:boom` (Python's default format) is ERROR, `... INFO worker: retry after ERROR` is
    INFO, `... worker: retry after ERROR` has no level.
  - A syslog line starting with <PRI>: severity PRI % 8; 0-2 FATAL, 3 ERROR, 4 WARN, 5-6 INFO,
    7 DEBUG.
  - A JSON line (starting with "{"): the first "level", "severity", "lvl", "loglevel" or
    "log.level" key whose value is a level word or a bunyan/pino number 10..60 (TRACE DEBUG INFO
    WARN ERROR FATAL).
Stack-trace lines (they start with a blank, or "Caused by:"), access-log lines and lines without a
word where one stands have no level.

Formats. An Analyzer given a format (formats.Format, detected from the file's head by the scan)
reads every line the format fits with it: its time, level and message where the format says, and
the line templated whatever its level (so `top --level info` has an answer); a line it fits with a
time but no level counts in `minutes` under NO_LEVEL. Lines it does not fit (a stack trace, a
line of another format) are read by the generic rules here.

Time. A leading timestamp, maybe after "[", "time=" or "ts=": ISO 8601 / RFC 3339 (T or blank
between date and time, "-" or "/" in the date, fraction after "." or ",", zone Z, UTC, +hh, +hhmm or
+hh:mm), RFC 3164 syslog `May 1 12:03:04` (dated with the Analyzer's `year`, or the year before for
a stamp more than a day past the file's `last_change`: a December line in a file last written in
January; without a year such lines get no minute), ctime `Wed Oct 11 14:32:52 2000` (Apache's error
log), epoch seconds (10 digits, 13 with milliseconds). RFC 5424 syslog, JSON ("ts", "time",
"timestamp", "@timestamp": an ISO string or an epoch number) and access logs (`[10/Oct/2000:13:55:36
-0700]`) have theirs where their format puts them. Timestamps without a zone are taken as UTC.
Minutes are UTC strings "2024-05-01T12:03". Only lines with a level and a timestamp count in
`minutes`; lines without a timestamp still count in `levels` and templates. Where minutes would be
too many (see WIDTHS: past two weeks of minutes, say), every bucket of the Analysis is an hour
"2024-05-01T12", or a day "2024-05-01": memory and the result stay bounded whatever the span.

Templates. Every line of the file's format, and, of the other lines, ERROR and FATAL ones and those
holding one of the scan's patterns (grep -F literals: case-sensitive bytes unless the Analyzer
ignores case as `grep -i` does, in ASCII; a pattern holds alternatives separated by "\\n"; an empty
one matches every line), are grouped by (level, template). The template is the message after the
timestamp and level (for JSON the "msg", "message", "error" or "err" string; for logfmt the msg=
value; for an access-log line its method, path and status), cut to TEMPLATE_BYTES, with quoted
strings, timestamps, URLs, e-mail addresses, IP addresses (with ports), paths, UUIDs, hex ids and
numbers masked as <STR> <TS> <URL> <EMAIL> <IP> <PATH> <UUID> <HEX> <NUM> (a number ending an
identifier, blk_123 or attempt-7, too; not one inside a word, utf8). Each keeps its count, the first
line seen as its example, and its counts per minute (of its lines with a timestamp, with a level or
not). An Analysis keeps the first MAX_TEMPLATES templates in file order; lines of any later template
only add to `overflow`. What `top` shows folds templates alike but for one word, where at least
FOLD_MIN of them vary in it (a user name, a host): see fold_templates.

Bounds: levels, timestamps and templates look at a line's first LINE_HEAD bytes (patterns at the
whole line), so memory stays O(piece) whatever the line length. Work is done a chunk of lines at a
time with regexes and C-level counting; Python runs per distinct key, and per line only for
templated lines that hold a pattern but are not ERROR/FATAL.
"""

import dataclasses
import datetime
import operator
import os
import re
from collections import Counter, defaultdict
from itertools import chain, compress, repeat
from operator import add, itemgetter, not_
from typing import Any

from . import formats
from .defaults import LEVELS

try:  # SIMD substring search: counts pattern hits several times faster than bytes.count
    import stringzilla as _sz
except ImportError:  # pragma: no cover
    _sz = None

SEVERE = ("ERROR", "FATAL")
"""Levels whose lines are templated whatever the patterns."""

NO_LEVEL = "-"
"""The level, in `minutes`, of lines a file's format reads a time from but no level (it has
none)."""

MAX_TEMPLATES = 1000
"""Distinct (level, template) pairs an Analysis keeps; lines of later ones only count in
`overflow`."""

LINE_HEAD = 4096
"""Bytes of a line that levels, timestamps, templates and examples ever look at."""

MAX_LEVEL_BUCKETS = 50_000
"""(time bucket, level) counts an Analysis keeps at most: two weeks of minutes at 3-4 levels a
minute."""

MAX_MESSAGE_BUCKETS = 100_000
"""(template, time bucket) counts an Analysis keeps at most, over all its templates."""

WIDTHS = (16, 13, 10)
"""Time buckets, finest first: minutes "2024-05-01T12:03", hours "2024-05-01T12", days "2024-05-01"
(a bucket's key is the start of its minute key). An Analysis uses the finest that keeps it within
MAX_LEVEL_BUCKETS and MAX_MESSAGE_BUCKETS (days if none does), so a log spanning a year has
hours."""

TEMPLATE_BYTES = 1024
"""Bytes of a message that its template is made of."""

EXAMPLE_CHARS = 500
"""Characters of a template's example line."""

CHUNK_SIZE = 1024 * 1024
"""Whole lines are analysed about this many bytes at a time, or CHUNK_LINES lines if fewer: that
bounds the lists of one step, which hold a few hundred bytes per line."""

CHUNK_LINES = 16 * 1024
"""Lines analysed at a time, at most (but for a step of one line): a megabyte of short lines would
make lists of over 100 MB."""

_SPELLINGS = {
    "FATAL": ("fatal", "critical", "crit", "emergency", "emerg", "alert", "panic"),
    "ERROR": ("error", "err", "severe"),
    "WARN": ("warning", "warn"),
    "INFO": ("information", "info", "notice"),
    "DEBUG": ("debug", "dbg", "fine"),
    "TRACE": ("trace", "finer", "finest"),
}
_WORD_LEVEL = {
    spelling: level
    for level, words in _SPELLINGS.items()
    for word in words
    for spelling in (word.upper().encode(), word.capitalize().encode(), word.encode())
}
_NUMBER_LEVEL = {
    b"10": "TRACE",
    b"20": "DEBUG",
    b"30": "INFO",
    b"40": "WARN",
    b"50": "ERROR",
    b"60": "FATAL",
}
_LEVEL_OF = {**_WORD_LEVEL, **_NUMBER_LEVEL}
_PRI_LEVEL_OF = {
    str(pri).encode(): ("FATAL", "FATAL", "FATAL", "ERROR", "WARN", "INFO", "INFO", "DEBUG")[
        pri % 8
    ]
    for pri in range(192)
}
_SEVERE_WORDS = frozenset(word for word, level in _LEVEL_OF.items() if level in SEVERE)
_SEVERE_PRIS = frozenset(pri for pri, level in _PRI_LEVEL_OF.items() if level in SEVERE)
_UTC = (b"", b"Z", b"UTC")
_MONTHS = {
    m.encode(): i
    for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)
}
# Caches and buffers, sized so that an analysis stays near 50 MB even on a log spanning a year (a
# distinct stamp every minute) or with 100,000 distinct messages, and no slower on usual logs.
_MINUTE_CACHE = 25_000  # distinct (stamp, zone) pairs remembered
_TEMPLATE_CACHE = 20_000  # distinct messages remembered (each up to TEMPLATE_BYTES)
_RAW_KEYS = 50_000  # distinct (stamp, zone, word, word) counted before folding into minutes
NL = b"\n"


_alternation = formats.alternation


# Every quantifier is bounded, so that nothing reads past a line's first LINE_HEAD bytes. Optional
# parts are written (?:x|), which sre runs faster than (?:x)?.
_SEP = rb"[ \t]{1,16}(?:[-|][ \t]{1,16}|)"
_STAMP_FORMS = (
    rb"\d{4}[-/]\d\d[-/]\d\d[T ]\d\d:\d\d"  # ISO 8601, Python, nginx
    # ctime (to the second)
    rb"|[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d{1,9}|) \d{4}"
    rb"|[A-Z][a-z]{2} [ \d]\d \d\d:\d\d"  # RFC 3164 syslog
    rb"|\d{10}(?=(?:\d{3}|)(?:\.\d{1,9}|)[ \t\]\"])"  # epoch seconds or millis
    rb"|\d\d:\d\d(?=:\d\d)"  # time of day: no minute
)
_STAMP = (
    rb"(?:\[|t(?:imestamp|ime|s|)=\"?|)(" + _STAMP_FORMS + rb")[:.,\d]{0,16}"
    rb"(Z|[ ]?[+-]\d\d(?::?\d\d|)|[ ]UTC|)[\]\"]?" + _SEP
)
_TOKEN = rb"[^ \t\n]{1,64}" + _SEP
_OPEN = rb"(?:[\[(<](?:[\w-]{1,32}:|)|l(?:evel|vl|oglevel)=\"?|severity=\"?|)"
_CLOSE = rb"[ ]?[\])>\"]?(?![^:\s])"
_MSG_START = rb":?[ \t]{0,16}[-|]?[ \t]{0,16}"
_WORDS = list(_WORD_LEVEL)

_TEXT = re.compile(  # head (up to the message), stamp, zone, ERROR/FATAL word, other word, message
    rb"\n((?:"
    + _STAMP
    + rb"(?:|"
    + _TOKEN
    + rb"(?:|"
    + _TOKEN
    + rb"))|)"  # up to 2 tokens, fewest first
    + _OPEN
    + rb"(?:("
    + _alternation([w for w in _WORDS if w in _SEVERE_WORDS])
    + rb")|("
    + _alternation([w for w in _WORDS if w not in _SEVERE_WORDS])
    + rb"))"
    + _CLOSE
    + rb"(?(4)"
    + _MSG_START
    + rb"))(?(4)([^\n]*))"
)
_TEXT_MSG_START = re.compile(_MSG_START)
_JSON = re.compile(  # level word, level number, stamp (ISO or epoch), zone, the line after "{"
    rb'\n\{(?=[^\n]{0,2048}?"(?:level|severity|lvl|loglevel|log\.level)"[ \t]{0,4}:[ \t]{0,4}'
    rb'(?:"(' + _alternation(_WORDS) + rb')"|([1-6]0)(?=[ \t,}])))'
    rb'(?:(?=[^\n]{0,2048}?"(?:ts|time|timestamp|@timestamp)"[ \t]{0,4}:[ \t]{0,4}"?'
    rb"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d|\d{10}(?=(?:\d{3}|)(?:\.\d{1,9}|)[ \t,}]))[:.,\d]{0,16}"
    rb'(Z|[+-]\d\d(?::?\d\d|)|)[ \t,}"])|)([^\n]*)'
)
_JSON_MESSAGE = re.compile(
    rb'"(?:msg|message|error|err)"[ \t]{0,4}:[ \t]{0,4}"((?:[^"\\\n]|\\.){0,2048})"'
)
# head (up to the message), PRI, RFC 5424 stamp and zone, RFC 3164 stamp, message
_PRI = re.compile(
    rb"\n(<(\d{1,3})>(?:1 (?:(\d{4}-\d\d-\d\dT\d\d:\d\d)[:.,\d]{0,16}(Z|[+-]\d\d:\d\d)|-)"
    rb" [^ \n]{1,255} [^ \n]{1,48} [^ \n]{1,128} [^ \n]{1,32} "
    rb"(?:-|(?:\[(?:[^\]\\\n]|\\.){0,128}\]){1,4}) ?"
    rb"|([A-Z][a-z]{2} [ \d]\d \d\d:\d\d):\d\d (?:[^ \n:]{1,255} (?=[^ \n]{1,64}:)|)|))([^\n]*)"
)
_ACCESS = re.compile(  # stamp, zone, method, path, status
    rb"\n[^ \n]{1,255} [^ \n]{1,64} [^ \n]{1,255} \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d):\d\d "
    rb"([+-]\d{4})\] "
    rb'"(?:([A-Z]{1,16}) ([^ "?\n]{0,1024})[^"\n]{0,2048}|[^"\n]{0,2048})" (\d{3})'
)
_STAMP_ONLY = re.compile(rb"\n" + _STAMP)
_LOGFMT_MESSAGE = re.compile(rb'(?:^|[ \t])(?:msg|message)=(?:"((?:[^"\\\n]|\\.)*)"|([^ \t\n]*))')

# Of _TEXT rows:
_HEAD = itemgetter(0)
_WORD = itemgetter(3)
_MSG = itemgetter(5)
_TEXT_KEY, _TEXT_STAMP = itemgetter(1, 2, 3, 4), itemgetter(1, 2)
_JSON_KEY = itemgetter(2, 3, 0, 1)  # of _JSON rows
_STAMP_OF = itemgetter(0, 1)  # of those keys

# Masks, in order. Each starts with one byte or byte class, so that sre tries it only where it can
# start (not at every byte); the ones that would still be tried at most bytes only run on messages
# holding their trigger.
_HEX4 = rb"[0-9a-fA-F]{1,4}"
_MASKS = tuple(
    (trigger, re.compile(rx), placeholder)
    for trigger, rx, placeholder in (
        (None, rb'"(?:[^"\\\n]|\\.)*"', b"<STR>"),
        (None, rb"'(?<!\w')[^'\n]*'(?!\w)", b"<STR>"),
        # ctime (Sun Jul 17 03:46:45 2005), and a time in dashes and dots
        # (2005-06-03-15.42.50.675872)
        (
            None,
            rb"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d{1,9}|)(?: \d{4}|)",
            b"<TS>",
        ),
        (None, rb"\d(?<![\w.]\d)\d{3}-\d\d-\d\d-\d\d\.\d\d\.\d\d(?:\.\d{1,9}|)", b"<TS>"),
        (
            None,
            rb"\d(?:\d{3}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:[.,]\d{1,9}|)|)(?:Z|[+-]\d\d:?\d\d|)"
            rb"|\d:\d\d:\d\d(?:[.,]\d{1,9}|)|\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d(?: [+-]\d{4}|))",
            b"<TS>",
        ),
        (b"://", rb"[A-Za-z][A-Za-z0-9+.-]{0,15}://[^\s\"'<>]*", b"<URL>"),
        (b"@", rb"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+", b"<EMAIL>"),
        (
            b"::",
            rb"\[[0-9a-fA-F:.]{2,45}\](?::\d{1,5}|)|(?<![\w:.])(?=[0-9a-fA-F:]*[0-9a-fA-F])(?:"
            rb"(?:"
            + _HEX4
            + rb":){7}"
            + _HEX4
            + rb"|(?:"
            + _HEX4
            + rb"(?::"
            + _HEX4
            + rb"){0,6}|)::"
            rb"(?:" + _HEX4 + rb"(?::" + _HEX4 + rb"){0,6}|))(?![\w:])",
            b"<IP>",
        ),
        (None, rb"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?::\d{1,5}|)(?!\.?\d)", b"<IP>"),
        (None, rb"/(?<![\w.:/~-]/)[\w.@%+~-]+(?:/[\w.@%+~-]*)+", b"<PATH>"),
        (b":\\", rb"[A-Za-z]:\\[^\s\"'<>]*", b"<PATH>"),
        (
            b"-",
            rb"[0-9a-fA-F][0-9a-fA-F]{7}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
            b"<UUID>",
        ),
        (None, rb"0x[0-9a-fA-F]+", b"<HEX>"),
        (
            None,
            rb"[0-9a-fA-F](?<![\w-][0-9a-fA-F])(?:(?<=[a-fA-F])|(?=\d*[a-fA-F]))[0-9a-fA-F]{7,}(?![\w-])",
            b"<HEX>",
        ),
        # A number: on its own, or ending an identifier (blk_-123, attempt_17): not one inside a
        # word (utf8, x509). (No newline before its minus: messages are masked joined by them,
        # and one must not read as another's neighbour.)
        (
            None,
            rb"[-\d](?:(?<=[_= \t\r\f\v(:,]-)\d|(?<=\d)(?<![A-Za-z0-9.]\d))\d*(?:\.\d+|)",
            b"<NUM>",
        ),
    )
)
_PATH_MASKS = _MASKS[-4:]  # UUIDs, hex and numbers: for the path of an access-log line


@dataclasses.dataclass
class Message:
    """One template's lines: how many, the first one, and how many per minute (of those with a
    time)."""

    count: int
    example: str
    minutes: dict[str, int]


@dataclasses.dataclass
class Analysis:
    """What the lines of a file or range hold: lines per level, per minute and level, and templates.

    `messages` maps (level or None, template) to its Message, in the order first seen.
    """

    levels: dict[str, int] = dataclasses.field(default_factory=dict)
    minutes: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    messages: dict[tuple[str | None, str], Message] = dataclasses.field(default_factory=dict)
    overflow: int = 0
    format: str | None = None  # the name of the format its lines were read with (see formats)

    def to_dict(self) -> dict:
        """A JSON-simple dict, which from_dict() reads back."""
        return {
            "levels": dict(self.levels),
            "minutes": {m: dict(self.minutes[m]) for m in sorted(self.minutes)},
            "messages": [
                {
                    "level": level,
                    "template": template,
                    "count": msg.count,
                    "example": msg.example,
                    "minutes": dict(msg.minutes),
                }
                for (level, template), msg in self.messages.items()
            ],
            "overflow": self.overflow,
            "format": self.format,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Analysis":
        return cls(
            dict(d["levels"]),
            {m: dict(by_level) for m, by_level in d["minutes"].items()},
            {
                (e["level"], e["template"]): Message(e["count"], e["example"], dict(e["minutes"]))
                for e in d["messages"]
            },
            d.get("overflow", 0),
            d.get("format"),
        )

    def merge(self, other: "Analysis", max_templates: int = MAX_TEMPLATES) -> "Analysis":
        """This Analysis followed by `other`, the next range of the file, as one; neither changes.

        Exactly the single pass's while `other` has no overflow: the earlier example wins, the
        templates kept are the first max_templates in file order, and the time buckets are the unit
        the single pass picks (the coarser of the two, or coarser still if the sum needs it).
        """
        width = min(self.width(), other.width())
        first, other = self.coarsened(width), other.coarsened(width)
        levels = Counter(first.levels)
        levels.update(other.levels)
        messages = {
            key: Message(msg.count, msg.example, dict(msg.minutes))
            for key, msg in first.messages.items()
        }
        overflow = first.overflow + other.overflow
        for key, msg in other.messages.items():
            mine = messages.get(key)
            if mine is not None:
                mine.count += msg.count
                for m, n in msg.minutes.items():
                    mine.minutes[m] = mine.minutes.get(m, 0) + n
            elif len(messages) < max_templates:
                messages[key] = Message(msg.count, msg.example, dict(msg.minutes))
            else:
                overflow += msg.count
        merged = Analysis(
            {level: levels[level] for level in LEVELS if levels[level]},
            fold(chain(first.minutes.items(), other.minutes.items()), width),
            messages,
            overflow,
            first.format or other.format,
        )
        while merged.width() > WIDTHS[-1] and not merged._fits():
            merged = merged.coarsened(WIDTHS[WIDTHS.index(merged.width()) + 1])
        return merged

    def without(self, last: "Analysis") -> "Analysis":
        """This Analysis less `last`, that of the range that ends it (the last line of a file,
        which may grow; see scanner.without_partial): counts exact, in this one's time buckets. A
        template of `last` this one does not keep was in its overflow."""
        last = last.coarsened(self.width())
        levels = Counter(self.levels)
        levels.subtract(last.levels)
        minutes = {m: Counter(by_level) for m, by_level in self.minutes.items()}
        for m, by_level in last.minutes.items():
            minutes.setdefault(m, Counter()).subtract(by_level)
        messages = {
            key: Message(msg.count, msg.example, dict(msg.minutes))
            for key, msg in self.messages.items()
        }
        overflow = self.overflow - last.overflow
        for key, msg in last.messages.items():
            mine = messages.get(key)
            if mine is None:
                overflow -= msg.count
                continue
            mine.count -= msg.count
            mine.minutes = {
                m: left for m, n in mine.minutes.items() if (left := n - msg.minutes.get(m, 0)) > 0
            }
            if mine.count <= 0:
                del messages[key]
        return Analysis(
            {level: levels[level] for level in LEVELS if levels[level] > 0},
            {
                m: {level: n for level, n in by_level.items() if n > 0}
                for m, by_level in minutes.items()
                if any(n > 0 for n in by_level.values())
            },
            messages,
            max(overflow, 0),
            self.format,
        )

    def width(self) -> int:
        """The length of its time buckets' keys (see WIDTHS): 16 for minutes, and when it has
        none."""
        for m in self.minutes:
            return len(m)
        for msg in self.messages.values():
            for m in msg.minutes:
                return len(m)
        return WIDTHS[0]

    def coarsened(self, width: int) -> "Analysis":
        """The same counts in time buckets of `width` (hours: 13, days: 10); itself if they are not
        finer."""
        if width >= self.width():
            return self
        return Analysis(
            dict(self.levels),
            fold(self.minutes.items(), width),
            {
                key: Message(msg.count, msg.example, _buckets(msg.minutes, width))
                for key, msg in self.messages.items()
            },
            self.overflow,
            self.format,
        )

    def _fits(self) -> bool:
        """Within MAX_LEVEL_BUCKETS and MAX_MESSAGE_BUCKETS, counting as an Analyzer does: a level
        or template with lines that have no time counts once more (their bucket is "")."""
        timed: Counter = Counter()
        for by_level in self.minutes.values():
            timed.update(by_level)
        level_entries = sum(map(len, self.minutes.values())) + sum(
            n > timed[lv] for lv, n in self.levels.items()
        )
        message_entries = sum(
            len(msg.minutes) + (msg.count > sum(msg.minutes.values()))
            for msg in self.messages.values()
        )
        return level_entries <= MAX_LEVEL_BUCKETS and message_entries <= MAX_MESSAGE_BUCKETS

    def top(self, n: int = 10, since=None, until=None, levels=None) -> list[dict]:
        """The n (None: all) most frequent templates as dicts: level, template, count, example.

        With `since` and/or `until` (minutes "2024-05-01T12:03", or datetimes, naive ones taken as
        UTC), counts are those of the lines timestamped in [since, until), and templates without one
        drop out. `levels` keeps the templates of those levels only (None stands for pattern lines
        without one). Templates alike but for one word are folded into one (fold_templates), its
        example the first one's. Ties keep the order first seen.
        """
        lo, hi = _minute_bound(since), _minute_bound(until)
        counted: dict[tuple, dict[str, Any]] = {}
        folded = fold_templates(self.messages)
        for key, msg in self.messages.items():
            if levels is not None and key[0] not in levels:
                continue
            count = (
                msg.count
                if lo is None and hi is None
                else sum(k for m, k in msg.minutes.items() if within(m, lo, hi))
            )
            if not count:
                continue
            level, template = folded[key]
            if (level, template) in counted:
                counted[level, template]["count"] += count
            else:
                counted[level, template] = {
                    "level": level,
                    "template": template,
                    "count": count,
                    "example": msg.example,
                }
        rows = sorted(counted.values(), key=lambda row: -int(row["count"]))
        return rows[:n]


class Analyzer:
    """Analyse a byte stream fed in pieces: feed() them in order, then call finish() once.

    `patterns` are the scan's patterns; `year` dates RFC 3164 syslog timestamps, or `last_change`
    (the file's mtime, a naive UTC datetime) does: its year, the one before for the stamps after it.
    """

    def __init__(
        self,
        patterns=(),
        year: int | None = None,
        max_templates: int = MAX_TEMPLATES,
        last_change: datetime.datetime | None = None,
        examples: bool = True,
        format: formats.Format | None = None,  # noqa: A002 - the word a user knows
        ignore_case: bool = False,
    ):
        alts = {alt for p in patterns for alt in os.fsencode(p).split(NL)}
        self._every = b"" in alts
        self._ignore_case = ignore_case
        if ignore_case:
            alts = {alt.lower() for alt in alts}
        self._alts = sorted(alts - {b""})
        self._keep = max(map(len, self._alts), default=1) - 1
        self._hits = (
            re.compile(
                b"(?:" + b"|".join(map(re.escape, self._alts)) + rb")[^\n]*",
                re.IGNORECASE if ignore_case else 0,
            )
            if self._alts
            else None
        )
        # The file's format (see formats): its lines are read with it, and templated whatever
        # their level; the lines it does not fit, and every line of a file without one, by the
        # generic rules below.
        self._format = format
        self._format_lines = 0
        # (time, zone) of the line before, if it was a two-line record's first line (see formats)
        self._header: tuple | None = None
        self._year = year if year is not None or last_change is None else last_change.year
        self._latest = last_change + _SYSLOG_SLACK if last_change is not None else None
        self._max = max_templates
        self._examples = examples  # off: templates keep no example line ("")
        self._raw: Counter = Counter()  # (stamp, zone, word, word) -> lines; folded into _pairs
        self._pairs: Counter = Counter()  # (minute or "", level or None) -> lines
        self._messages: dict = {}  # (level, template) -> Message, counts filled by finish()
        self._counts: Counter = Counter()  # (level, template) -> lines
        self._key_minutes: Counter = Counter()  # ((level, template), minute or "") -> lines
        self._overflow = 0
        # The open line:
        self._head = b""
        self._len = 0
        self._hit = False
        self._tail = b""
        self._minute_of: dict = {}
        self._template_of: dict = {}
        self._request_of: dict = {}
        self._shape_of: dict = {}  # message shape -> its template (see _by_shape)
        self._request_shape_of: dict = {}  # and of access-log requests
        self._format_minute_of: dict = {}  # (time, zone) a format found -> its minute
        self._level_of_word: dict = {}  # level word a format found -> its level
        self._counted_as: dict = {}  # and the level its lines count under in minutes
        self._width = WIDTHS[
            0
        ]  # of the time buckets: coarser once they would be too many (_shrink)

    def feed(self, data: bytes) -> None:
        """Analyse the next piece of the stream; a line may straddle pieces."""
        data = bytes(data)
        first = data.find(NL)
        if first < 0:
            self._grow(data, 0, len(data))
            return
        self._grow(data, 0, first)
        self._end_line()
        lo, hi = first + 1, data.rfind(NL) + 1
        while lo < hi:
            cut = _cut(data, lo, hi)
            self._chunk(data, lo, cut)
            lo = cut
        self._grow(data, hi, len(data))

    def follow(self, line: bytes) -> None:
        """Take `line` as the line before what is fed (a byte range's scan: the line before its
        start), so that a two-line record cut there still reads its time; nothing of it counts."""
        if self._format is not None and self._format.header:
            stamp = self._format.header_stamp(line[:LINE_HEAD])
            self._header = (stamp[0], b"", stamp[1]) if stamp else None

    def finish(self) -> "Analysis":
        """The Analysis of everything fed; a last line without "\\n" counts, as in grep."""
        if self._len:
            self._end_line()
        self._fold()
        for key, n in self._counts.items():
            self._messages[key].count += n
        for (key, minute), n in self._key_minutes.items():
            if minute:
                minutes = self._messages[key].minutes
                minutes[minute] = minutes.get(minute, 0) + n
        levels: Counter = Counter()
        minutes_by_level: defaultdict = defaultdict(dict)
        for (minute, level), n in self._pairs.items():
            levels[level] += n
            if minute:
                minutes_by_level[minute][level] = n
        return Analysis(
            {level: levels[level] for level in LEVELS if levels[level]},
            {m: minutes_by_level[m] for m in sorted(minutes_by_level)},
            self._messages,
            self._overflow,
            self._format.name if self._format is not None and self._format_lines else None,
        )

    # -- one line at a time: the first line of each piece, and lines straddling pieces

    def _grow(self, data: bytes, lo: int, hi: int) -> None:
        """Add data[lo:hi] to the open line: keep its head, and whether it holds a pattern."""
        if lo >= hi:
            return
        if len(self._head) < LINE_HEAD:
            self._head += data[lo : min(hi, lo + LINE_HEAD - len(self._head))]
        if self._alts and not self._hit:
            piece = data[lo:hi].lower() if self._ignore_case else data[lo:hi]
            edge = self._tail + piece[: self._keep]  # where a hit may straddle two pieces
            self._hit = any(alt in edge or alt in piece for alt in self._alts)
            if self._keep:
                self._tail = (self._tail + piece[-self._keep :])[-self._keep :]
        self._len += hi - lo

    def _end_line(self) -> None:
        line, hit = self._head, self._hit or self._every
        self._head = b""
        self._len = 0
        self._hit = False
        self._tail = b""
        fmt = self._format
        found = fmt.match(line) if fmt is not None else None
        header, self._header = self._header, None
        if fmt is not None and fmt.header and found is None:
            stamp = fmt.header_stamp(line)  # and the line is read as any other
            self._header = (stamp[0], b"", stamp[1]) if stamp else None
        if fmt is not None and found is not None:
            word, time, zone, message = found
            if fmt.header:
                time, _, zone = header or (b"", b"", b"")
            self._format_lines += 1
            minute = self._format_minutes([(time, b"", zone)])[0]
            (level,), (template,) = _format_read(fmt, [word], [message], self._format_templates)
            self._pairs[minute, level or NO_LEVEL] += 1
            self._account([_Stream([(level, template)], [minute], [line])])
            return
        level, stamp, src, template = _classify(line)
        minute = self._minutes_of([stamp])[0]
        if level:
            self._pairs[minute, level] += 1
        if level in SEVERE or hit:
            if template is None:
                template = self._templates([src])[0]
            self._account([_Stream([(level, template)], [minute], [line])])

    # -- whole lines in bulk: regexes over a chunk, C loops per line, Python per distinct key

    def _chunk(self, data: bytes, lo: int, hi: int) -> None:
        """Analyse the whole lines data[lo:hi] (data[lo - 1] and data[hi - 1] are newlines)."""
        if self._format is not None:
            self._chunk_format(data, lo, hi)
            return
        start = lo - 1
        rows = _TEXT.findall(data, start, hi)
        self._tally(map(_TEXT_KEY, rows))
        streams = []
        severe = list(filter(_WORD, rows))
        if severe:
            msgs = list(map(_MSG, severe))
            streams.append(
                _Stream(
                    list(
                        zip(map(_LEVEL_OF.__getitem__, map(_WORD, severe)), self._templates(msgs))
                    ),
                    self._minutes_of(list(map(_TEXT_STAMP, severe))),
                    list(map(add, map(_HEAD, severe), msgs)),
                )
            )
        if _find(data, b"\n{", start, hi):
            streams += self._json(data, start, hi)
        if _find(data, b"\n<", start, hi):
            streams += self._pri(data, start, hi)
        if self._alts or self._every:
            streams += self._pattern_lines(data, start, hi, streams)
        if streams:
            self._account(streams, data, start, hi)

    def _json(self, data: bytes, start: int, hi: int) -> list:
        rows = _JSON.findall(data, start, hi)
        self._tally(map(_JSON_KEY, rows))
        severe = [row for row in rows if (row[0] or row[1]) in _SEVERE_WORDS]
        if not severe:
            return []
        lines = [b"{" + row[4] for row in severe]
        return [
            _Stream(
                list(
                    zip(
                        [_LEVEL_OF[row[0] or row[1]] for row in severe],
                        self._templates([_json_message(line[:LINE_HEAD]) for line in lines]),
                    )
                ),
                self._minutes_of([row[2:4] for row in severe]),
                lines,
            )
        ]

    def _pri(self, data: bytes, start: int, hi: int) -> list:
        rows = _PRI.findall(data, start, hi)
        self._tally((iso + syslog, zone, b"<", pri) for _, pri, iso, zone, syslog, _ in rows)
        severe = [row for row in rows if row[1] in _SEVERE_PRIS]
        if not severe:
            return []
        return [
            _Stream(
                list(
                    zip(
                        [_PRI_LEVEL_OF[row[1]] for row in severe],
                        self._templates([row[5] for row in severe]),
                    )
                ),
                self._minutes_of([(row[2] + row[4], row[3]) for row in severe]),
                [row[0] + row[5] for row in severe],
            )
        ]

    def _pattern_lines(self, data: bytes, start: int, hi: int, severe_streams: list) -> list:
        """The lines holding a pattern that are not ERROR/FATAL (those are templated already)."""
        severe = [line for stream in severe_streams for line in stream.lines]
        if self._every:
            found, pos = [], start + 1
            for line in data[start + 1 : hi - 1].split(NL):
                found.append((pos, line))
                pos += len(line) + 1
        else:
            if not self._ignore_case:
                hits = sum(_count(data, alt, start, hi) for alt in self._alts)
                if hits == sum(sum(map(bytes.count, severe, repeat(alt))) for alt in self._alts):
                    return []  # every hit lies in a severe line
            found = []
            assert self._hits is not None  # there are patterns
            for m in self._hits.finditer(data, start, hi):
                lo = data.rfind(NL, start, m.start()) + 1
                found.append((lo, data[lo : m.end()]))
        in_severe = set(severe)
        rows = [
            (pos, line, *_classify(line[:LINE_HEAD]))
            for pos, line in found
            if line not in in_severe
        ]
        if not rows:
            return []
        masked = iter(self._templates([src for *_, src, template in rows if template is None]))
        keys = [
            (level, next(masked) if template is None else template)
            for _, _, level, _, _, template in rows
        ]
        return [
            _Stream(
                keys,
                self._minutes_of([row[3] for row in rows]),
                [row[1] for row in rows],
                [row[0] for row in rows],
            )
        ]

    # -- accounting

    def _tally(self, keys) -> None:
        """Count lines per (stamp, zone, word, word): one C-level dict update per line."""
        self._raw.update(keys)
        if len(self._raw) > _RAW_KEYS:
            self._fold()

    def _fold(self) -> None:
        """Turn the counts per (stamp, zone, word, word) into counts per (minute, level)."""
        raw, pairs = self._raw, self._pairs
        for (_, _, word, other), minute, n in zip(
            raw, self._minutes_of(list(map(_STAMP_OF, raw))), raw.values()
        ):
            level = _PRI_LEVEL_OF.get(other) if word == b"<" else _LEVEL_OF[word or other]
            if level:
                pairs[minute, level] += n
        raw.clear()
        self._shrink()

    def _shrink(self) -> None:
        """Coarsen the time buckets while there are more than the Analysis may keep (see WIDTHS).

        `_pairs` and `_key_minutes` hold one entry per bucket, or "" for lines without a time,
        exactly what Analysis._fits counts; counts only grow, so this picks the width a single look
        at the whole file would.
        """
        while self._width > WIDTHS[-1] and (
            len(self._pairs) > MAX_LEVEL_BUCKETS or len(self._key_minutes) > MAX_MESSAGE_BUCKETS
        ):
            width = self._width = WIDTHS[WIDTHS.index(self._width) + 1]
            pairs: Counter = Counter()
            for (minute, level), n in self._pairs.items():
                pairs[minute[:width], level] += n
            key_minutes: Counter = Counter()
            for (key, minute), n in self._key_minutes.items():
                key_minutes[key, minute[:width]] += n
            self._pairs, self._key_minutes = pairs, key_minutes

    # -- a file's format: every line it fits read by it, the others by the generic rules

    def _chunk_format(self, data: bytes, lo: int, hi: int) -> None:
        """Analyse the whole lines data[lo:hi] with the file's format: its lines are templated
        whatever their level; a line it does not fit goes through `_classify`. Python runs per
        distinct key (word, time, message shape), not per line, but for formats whose lines need
        more (two-line records, quoted or containers' messages) and lines the format misses."""
        fmt = self._format
        assert fmt is not None
        rows = fmt.bulk.findall(data, lo - 1, hi)
        get = _FormatRows(fmt)
        if fmt.header or fmt.inner or fmt.quoted:
            self._account([self._format_records(rows, get)], data, lo - 1, hi)
            return
        fits = list(map(bool, map(get.line, rows)))
        streams = []
        fitted = rows if False not in fits else list(compress(rows, fits))
        if fitted:
            streams.append(self._format_stream(fitted, get))
        if len(fitted) < len(rows):
            others = [
                self._other_line(row[get.other_at]) for row in compress(rows, map(not_, fits))
            ]
            kept = [key is not None for key, _, _ in others]
            if True in kept:
                streams.append(_Stream(*map(list, zip(*compress(others, kept)))))
        if streams:
            self._account(streams, data, lo - 1, hi)

    def _format_stream(self, rows: list, get: "_FormatRows") -> "_Stream":
        """The lines a format fits (of one step, not of two-line records), counted and templated:
        C-level passes over the rows, Python per distinct word, time and message shape."""
        fmt = self._format
        assert fmt is not None
        minutes = self._format_minutes(
            list(zip(map(get.time, rows), map(get.year, rows), map(get.zone, rows)))
        )
        words = list(map(get.level, rows))
        levels_of, counted_as = self._level_of_word, self._counted_as
        missing = set(words).difference(levels_of)
        if missing:
            levels_of.update((word, fmt.level(word)) for word in missing)
            counted_as.update((word, levels_of[word] or NO_LEVEL) for word in missing)
        levels = list(map(levels_of.__getitem__, words))
        self._pairs.update(zip(minutes, map(counted_as.__getitem__, words)))
        self._format_lines += len(rows)
        templates = self._format_templates(list(map(get.message, rows)))
        return _Stream(list(zip(levels, templates)), minutes, list(map(get.line, rows)))

    def _format_records(self, rows: list, get: "_FormatRows") -> "_Stream":
        """The lines of one step of a format that needs a look at each: two-line records (a
        line's time may be the line before's), quoted messages, containers' lines."""
        fmt = self._format
        assert fmt is not None
        stamps: list = []
        lines: list = []
        words: list = []
        messages: list = []
        fitted: list = []
        header = self._header
        for row in rows:
            line = row[get.line_at]
            time = row[get.time_at]
            if row[get.year_at]:
                time = time + b" " + row[get.year_at]
            if line:
                # a two-line record's second line: the time of the first, if that came just before
                stamps.append(
                    (time, b"", row[get.zone_at]) if not fmt.header else header or (b"", b"", b"")
                )
                words.append(row[get.level_at])
                messages.append(row[get.message_at])
                lines.append(line)
                fitted.append(True)
                header = None
            else:  # read by the generic rules: a two-line record's first line too
                header = (time, b"", row[get.zone_at]) if row[get.header_at] else None
                lines.append(row[get.header_at] or row[get.other_at])
                fitted.append(False)
        self._header = header
        self._format_lines += len(messages)
        minutes = iter(self._format_minutes(stamps))
        levels, found = _format_read(fmt, words, messages, self._format_templates)
        templates = iter(found)
        levels_in_order = iter(levels)
        keys, kept_minutes, kept_lines = [], [], []
        for is_fitted, line in zip(fitted, lines):
            if is_fitted:
                level = next(levels_in_order)
                minute = next(minutes)
                self._pairs[minute, level or NO_LEVEL] += 1
                key = (level, next(templates))
            else:
                key, minute, line = self._other_line(line)
            if key is not None:
                keys.append(key)
                kept_minutes.append(minute)
                kept_lines.append(line)
        return _Stream(keys, kept_minutes, kept_lines)

    def _other_line(self, line: bytes) -> tuple:
        """(key or None, minute, line) of a line the file's format does not fit, read by the
        generic rules: counted, and its key if it is templated (ERROR, FATAL, or a pattern's)."""
        level, stamp, src, template = _classify(line[:LINE_HEAD])
        minute = self._minutes_of([stamp])[0]
        if level:
            self._pairs[minute, level] += 1
        hit = self._every or (self._hits is not None and self._hits.search(line) is not None)
        if level in SEVERE or hit:
            return (
                (level, template if template is not None else self._templates([src])[0]),
                minute,
                line,
            )
        return None, minute, line

    def _format_minutes(self, stamps: list) -> list:
        """The time bucket of each (time, year, zone) the file's format captured, "" if none."""
        fmt = self._format
        assert fmt is not None
        minutes = _cached(
            self._format_minute_of,
            stamps,
            _MINUTE_CACHE,
            lambda todo: [
                fmt.minute(_with_year(t, y), z, self._year, self._latest) for t, y, z in todo
            ],
        )
        width = self._width
        return minutes if width == WIDTHS[0] else [m[:width] for m in minutes]

    def _minutes_of(self, stamps: list) -> list:
        """The time bucket (UTC minute, or hour or day: see _shrink) of each (stamp, zone) pair, ""
        if none; parsed once per distinct pair."""
        minutes = _cached(
            self._minute_of,
            stamps,
            _MINUTE_CACHE,
            lambda todo: [_to_minute(s, self._year, self._latest) for s in todo],
        )
        width = self._width
        return minutes if width == WIDTHS[0] else [m[:width] for m in minutes]

    def _templates(self, srcs: list) -> list:
        """The template of each message; masked once per distinct shape of message (_by_shape),
        all at once. A template is made of a message's first TEMPLATE_BYTES: the caches hold no more
        of it (long lines would make them hold _TEMPLATE_CACHE of them whole)."""
        return self._by_shape(
            list(map(_HEAD_OF_MESSAGE, srcs)), _mask_all, self._shape_of, self._template_of
        )

    def _format_templates(self, messages: list) -> list:
        """The templates of messages the file's format read (as _templates does, or of access-log
        requests for a format whose messages are those), looked up by their shape."""
        assert self._format is not None
        srcs = list(map(_HEAD_OF_MESSAGE, messages))
        if self._format.request:  # the status, last, is kept: it is in the template
            return self._by_shape(srcs, _request_all, self._request_shape_of, self._request_of, 3)
        return self._by_shape(srcs, _mask_all, self._shape_of, self._template_of)

    def _by_shape(self, srcs: list, mask, by_shape: dict, exact: dict, tail: int = 0) -> list:
        """mask(srcs), one call per distinct *shape* of message: the message with its digits all 1
        (but for its last `tail` bytes, and the 0 of "0x", the one digit a mask looks at). A
        message is masked as its shape is, but for the digits the template keeps (a version, v2).
        So a shape whose template keeps no 1, or keeps the same when its digits are all 2, has the
        template of every message of that shape. The others fall back to one call per distinct
        message. `by_shape` and `exact` are the caches of each."""
        if tail:
            shapes: list = [_shape(src, _ONES, tail) for src in srcs]
        else:
            shapes = list(map(bytes.translate, srcs, repeat(_ONES)))
            hex_at = list(compress(range(len(srcs)), map(bytes.__contains__, srcs, repeat(b"0x"))))
            for i in hex_at:
                shapes[i] = _shape(srcs[i], _ONES)

        def per_shape(todo):
            first = dict(zip(reversed(shapes), reversed(srcs)))
            templates = mask([key[0] if key.__class__ is tuple else key for key in todo])
            for i, template in enumerate(templates):
                if "1" in template and todo[i].__class__ is not tuple:
                    twos = _shape(first[todo[i]], _TWOS, tail)
                    assert twos.__class__ is bytes  # as its shape of ones is
                    if mask([twos])[0] != template:
                        templates[i] = _KEEPS_DIGITS
            return templates

        templates = _cached(by_shape, shapes, _TEMPLATE_CACHE, per_shape)
        if _KEEPS_DIGITS in templates:
            at = list(
                compress(range(len(templates)), map(operator.is_, templates, repeat(_KEEPS_DIGITS)))
            )
            found = _cached(exact, [srcs[i] for i in at], _TEMPLATE_CACHE, mask)
            for i, template in zip(at, found):
                templates[i] = template
        return templates

    def _account(self, streams: list, data: bytes = b"", start: int = 0, hi: int = 0) -> None:
        """Count the templated lines of one step: streams of lines, each in file order.

        Templates new to the Analysis are admitted in file order while there is room; when they come
        from more than one stream, their first lines are located in data[start:hi] to learn that
        order.
        """
        messages = self._messages
        room = self._max - len(messages)
        if room > 0:
            firsts: dict = {}  # new key -> [(stream, index of its first line there)]
            for s, stream in enumerate(streams):
                new = set(stream.keys).difference(messages)
                if new:
                    first = dict(zip(reversed(stream.keys), range(len(stream.keys) - 1, -1, -1)))
                    for key in new:
                        firsts.setdefault(key, []).append((s, first[key]))
            several = len({s for places in firsts.values() for s, _ in places}) > 1
            placed = []
            for key, places in firsts.items():
                where = [
                    (streams[s].position(i, data, start, hi) if several else i, s, i)
                    for s, i in places
                ]
                placed.append((min(where), key))
            placed.sort(key=itemgetter(0))
            for (_, s, i), key in placed[:room]:
                messages[key] = Message(
                    0, _example(streams[s].lines[i]) if self._examples else "", {}
                )
        for stream in streams:
            kept = list(map(messages.__contains__, stream.keys))
            self._overflow += kept.count(False)
            self._counts.update(compress(stream.keys, kept))
            self._key_minutes.update(compress(zip(stream.keys, stream.minutes), kept))
        self._shrink()


class _Stream:
    """Templated lines of one step from one source, in file order: keys, minutes, the lines
    themselves."""

    __slots__ = ("keys", "minutes", "lines", "offsets")

    def __init__(self, keys: list, minutes: list, lines: list, offsets: list | None = None):
        self.keys = keys
        self.minutes = minutes
        self.lines = lines
        self.offsets = offsets

    def position(self, i: int, data: bytes, start: int, hi: int) -> int:
        """Where line i starts in data; identical lines classify alike, so the first copy is line
        i."""
        if self.offsets is not None:
            return self.offsets[i]
        return data.find(NL + self.lines[i] + NL, start, hi) + 1


def _cut(data: bytes, lo: int, hi: int) -> int:
    """Where the step of whole lines from data[lo] ends: after CHUNK_SIZE bytes or CHUNK_LINES
    lines, whichever comes first, at a line end (data[hi - 1] is one), or after one line longer than
    that."""
    end = min(hi, lo + CHUNK_SIZE)
    while (lines := data.count(NL, lo, end)) > CHUNK_LINES:
        end = (
            lo + (end - lo) * CHUNK_LINES // lines
        )  # shorter, so lines fall: ends with one line at most
    cut = end if end == hi else data.rfind(NL, lo, end) + 1
    return cut if cut > lo else data.find(NL, lo) + 1


def analyse(
    data: bytes,
    patterns=(),
    year: int | None = None,
    max_templates: int = MAX_TEMPLATES,
    format: formats.Format | None = None,  # noqa: A002
) -> Analysis:
    """The Analysis of a whole byte string (handy in tests and at the REPL)."""
    analyzer = Analyzer(patterns, year, max_templates, format=format)
    analyzer.feed(data)
    return analyzer.finish()


def read_line(
    line: bytes, fmt: formats.Format | None = None, year: int | None = None, before: bytes = b""
) -> tuple:
    """(level, minute, template, whether `fmt` fits it) of one line, as a scan reads it, `before`
    the line before it; the template whatever its level (a scan without a format templates only
    ERROR, FATAL and pattern lines)."""
    found = fmt.match(line) if fmt is not None else None
    if fmt is not None and found is not None:
        word, time, zone, message = found
        if fmt.header:
            time, zone = fmt.header_stamp(before) or (b"", b"")
        masks = _request_all if fmt.request else _mask_all
        (level,), (template,) = _format_read(
            fmt, [word], [message], lambda srcs: masks([src[:TEMPLATE_BYTES] for src in srcs])
        )
        return level, fmt.minute(time, zone, year, None), template, True
    level, stamp, src, template = _classify(line[:LINE_HEAD])
    if template is None:
        template = _mask_all([src[:TEMPLATE_BYTES]])[0]
    return level, _to_minute(stamp, year), template, False


def _classify(line: bytes):
    """(level, (stamp, zone), message, template) of a line's head, exactly as the bulk path sees it.

    The template is only set for access-log lines (method, path, status); for others it comes from
    the message.
    """
    buf = NL + line
    if line[:1] == b"<" and (m := _PRI.match(buf)):
        _, pri, iso, zone, syslog, msg = m.groups(b"")
        return _PRI_LEVEL_OF.get(pri), (iso + syslog, zone), msg, None
    if line[:1] == b"{" and (m := _JSON.match(buf)):
        word, number, stamp, zone, _ = m.groups(b"")
        return _LEVEL_OF[word or number], (stamp, zone), _json_message(line), None
    if m := _TEXT.match(buf):
        _, stamp, zone, severe, other, msg = m.groups(b"")
        if severe:
            return _LEVEL_OF[severe], (stamp, zone), msg, None
        return (
            _LEVEL_OF[other],
            (stamp, zone),
            buf[_match_end(_TEXT_MSG_START, buf, m.end()) :],
            None,
        )
    if m := _ACCESS.match(buf):
        stamp, zone, method, path, status = m.groups(b"")
        request = method + b" " + _mask(path, _PATH_MASKS) if method else b"<STR>"
        return None, (stamp, zone), None, (request + b" " + status).decode("utf-8", "replace")
    if m := _STAMP_ONLY.match(buf):
        return None, m.groups(b""), buf[m.end() :], None
    return None, (b"", b""), line, None


class _FormatRows:
    """Getters of the fields of a format's `bulk` findall rows."""

    def __init__(self, fmt: formats.Format):
        at = fmt.bulk_groups
        (
            self.header_at,
            self.line_at,
            self.time_at,
            self.year_at,
            self.zone_at,
            self.level_at,
            self.message_at,
            self.other_at,
        ) = at
        self.line, self.time, self.year, self.zone, self.level, self.message = (
            itemgetter(i) for i in at[1:7]
        )


def _with_year(time: bytes, year: bytes) -> bytes:
    return time + b" " + year if year else time


#: Digits, all alike: a message's shape (see Analyzer._by_shape).
_ONES = bytes.maketrans(b"0123456789", b"1111111111")
_TWOS = bytes.maketrans(b"0123456789", b"2222222222")
#: The template of a shape whose messages keep digits in their templates.
_KEEPS_DIGITS: Any = object()
#: A message's first TEMPLATE_BYTES, all its template is made of.
_HEAD_OF_MESSAGE = itemgetter(slice(0, TEMPLATE_BYTES))


def _shape(message: bytes, digits: bytes, tail: int = 0) -> bytes | tuple:
    """The message with its digits all one (but for its last `tail` bytes, and the 0 of "0x");
    (message,) for one that holds \x01, the byte that stands in for that 0 meanwhile."""
    head, end = (message[:-tail], message[-tail:]) if tail else (message, b"")
    if b"0x" in head:
        if b"\x01" in head:
            return (message,)
        return head.replace(b"0x", b"\x01x").translate(digits).replace(b"\x01x", b"0x") + end
    return head.translate(digits) + end


def _format_read(fmt: formats.Format, words: list, messages: list, templates_of) -> tuple:
    """(levels, templates) of lines a format fits, from the level words and messages it found in
    them: its own levels, and its messages templated by `templates_of`; for a format whose message
    is a log line of its own (a container's), the level and message the generic rules read in it,
    where the format has no level of its own."""
    levels = list(map(fmt.level, words))
    messages = list(map(fmt.clean, messages))
    if not fmt.inner:
        return levels, templates_of(messages)
    given, srcs = [], []
    for i, message in enumerate(messages):
        level, _, src, template = _classify(message[:LINE_HEAD])
        if levels[i] is None:
            levels[i] = level
        given.append(template)
        if template is None:
            srcs.append(src)
    masked = iter(templates_of(srcs))
    return levels, [template if template is not None else next(masked) for template in given]


def _match_end(rx, buf: bytes, pos: int) -> int:
    """Where `rx`, which matches any text (empty included), ends when matched at `pos`."""
    m = rx.match(buf, pos)
    return m.end() if m else pos


def _cached(cache: dict, keys: list, limit: int, compute) -> list:
    """cache[key] for each key, computing the missing ones in one call. A cache about to outgrow
    `limit` is emptied first, but for the keys this call found in it."""
    values = list(map(cache.get, keys))
    if None in values:
        todo = list(set(compress(keys, map(operator.is_, values, repeat(None)))))
        if len(cache) + len(todo) > limit:
            found = {key: cache[key] for key in set(keys).difference(todo)}
            cache.clear()
            cache.update(found)
        cache.update(zip(todo, compute(todo)))
        values = list(map(cache.__getitem__, keys))
    return values


def _json_message(line: bytes) -> bytes:
    m = _JSON_MESSAGE.search(line)
    return m[1] if m else line


def _mask(text: bytes, masks) -> bytes:
    for trigger, rx, placeholder in masks:
        if trigger is None or trigger in text:
            text = rx.sub(placeholder, text)
    return text


def _mask_all(srcs: list) -> list:
    """The templates of messages; masks without a trigger run once over all of them joined by
    newlines."""
    texts = []
    for src in srcs:
        src = src[:TEMPLATE_BYTES]
        if b"msg=" in src or b"message=" in src:
            m = _LOGFMT_MESSAGE.search(src)
            if m:
                src = m[1] if m[1] is not None else m[2]
        texts.append(src)
    return [text.decode("utf-8", "replace").strip() for text in _masked(texts, _MASKS)]


def _masked(texts: list, masks) -> list:
    """Each text (none holding a newline) masked; masks without a trigger run once over all of them
    joined by newlines."""
    for trigger, rx, placeholder in masks:
        if trigger is None:
            texts = rx.sub(placeholder, NL.join(texts)).split(NL)
        else:
            texts = [rx.sub(placeholder, text) if trigger in text else text for text in texts]
    return texts


#: An access log's request and status, as a format reads them: `GET /path?query HTTP/1.1" 200`.
_REQUEST = re.compile(rb'([A-Z]{1,16}) ([^ "?\n]{0,1024})[^"\n]*" (\d{3})')


def _request_all(srcs: list) -> list:
    """The templates of access-log requests: the method, the path with its numbers, ids and hashes
    masked (its query left out), and the status, as the generic rules template an access-log line;
    `<STR>` and the status for a request that is no method and path ("-", a probe's garbage)."""
    found = [_REQUEST.match(src) for src in srcs]
    paths = _masked([m[2] if m else b"" for m in found], _PATH_MASKS)
    return [
        (m[1] + b" " + path + b" " + m[3] if m else b"<STR> " + src[-3:].lstrip(b'" '))
        .decode("utf-8", "replace")
        .strip()
        for m, path, src in zip(found, paths, srcs)
    ]


def _example(line: bytes) -> str:
    return line[: EXAMPLE_CHARS * 4].decode("utf-8", "replace")[:EXAMPLE_CHARS].rstrip("\r\n")


#: How far past the file's last change an RFC 3164 stamp may be and still be of that year: its
#: stamps are local times, the change is in UTC.
_SYSLOG_SLACK = datetime.timedelta(days=1)


def _to_minute(stamp: tuple, year: int | None, latest: datetime.datetime | None = None) -> str:
    """The UTC minute "YYYY-MM-DDTHH:MM" of a (stamp, zone) pair as the regexes capture it, or "".
    An RFC 3164 stamp (no year) is of `year`, or of the year before if that puts it after `latest`.
    """
    text, zone = stamp
    zone = zone.strip()
    try:
        if len(text) == 16 and text[4:5] in b"-/":  # 2024-05-01T12:03, 2024/05/01 12:03
            y = int(text[:4])
            mo = int(text[5:7])
            d = int(text[8:10])
            h = int(text[11:13])
            mi = int(text[14:16])
            if zone in _UTC and 1 <= mo <= 12 and 1 <= d <= _days(y, mo) and h < 24 and mi < 60:
                # the usual case
                return f"{text[:10].decode().replace('/', '-')}T{text[11:16].decode()}"
            t = datetime.datetime(y, mo, d, h, mi)
        elif len(text) == 10 and text.isdigit():  # epoch seconds
            t = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=int(text))
        elif len(text) >= 24:  # ctime: Wed Oct 11 14:32:52[.123] 2000
            t = datetime.datetime(
                int(text[-4:]),
                _MONTHS[text[4:7]],
                int(text[8:10]),
                int(text[11:13]),
                int(text[14:16]),
            )
        elif len(text) == 17:  # common log format: 10/Oct/2000:13:55
            t = datetime.datetime(
                int(text[7:11]),
                _MONTHS[text[3:6]],
                int(text[:2]),
                int(text[12:14]),
                int(text[15:17]),
            )
        elif len(text) == 12 and year:  # RFC 3164: May  1 12:03
            t = datetime.datetime(
                year, _MONTHS[text[:3]], int(text[4:6]), int(text[7:9]), int(text[10:12])
            )
            if latest is not None and t > latest:
                t = t.replace(year=year - 1)
        else:
            return ""
        if zone not in _UTC:
            hours, minutes = int(zone[1:3]), int(zone[-2:]) if len(zone) > 3 else 0
            if hours > 23 or minutes > 59:
                return ""
            offset = datetime.timedelta(hours=hours, minutes=minutes)
            t = t - offset if zone[:1] == b"+" else t + offset
    except (ValueError, KeyError, OverflowError):
        return ""
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}"


def _days(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def within(bucket: str, since: str | None, until: str | None) -> bool:
    """Does the time bucket start in [since, until) (minute keys; None: unbounded), both ends
    rounded down to the bucket's unit (so an hour bucket counts whole, or not at all)?"""
    width = len(bucket)
    return (since is None or bucket >= since[:width]) and (until is None or bucket < until[:width])


def fold(buckets, width: int) -> dict:
    """(time bucket, {level: lines}) pairs as {bucket: {level: lines}} in time order, summed into
    buckets of `width` (see WIDTHS). A bucket may come more than once; each is `width` long or
    finer."""
    folded: defaultdict = defaultdict(Counter)
    for bucket, by_level in buckets:
        folded[bucket[:width]].update(by_level)
    return {bucket: dict(folded[bucket]) for bucket in sorted(folded)}


def _buckets(counts: dict, width: int) -> dict:
    """Counts per time bucket, summed into buckets of `width`."""
    out: dict = {}
    for m, n in counts.items():
        out[m[:width]] = out.get(m[:width], 0) + n
    return out


def _minute_bound(value) -> str | None:
    """A `since`/`until` argument as a minute string."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(datetime.UTC)
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}"


def _find(data: bytes, needle: bytes, start: int, hi: int) -> bool:
    if _sz is not None:
        return _sz.Str(data).find(needle, start, hi) >= 0
    return data.find(needle, start, hi) >= 0


def _count(data: bytes, needle: bytes, start: int, hi: int) -> int:
    if _sz is not None:
        return _sz.Str(data).count(needle, start, hi)
    return data.count(needle, start, hi)


#: A key=value word varies in its value only.
_KEY_VALUE = re.compile(r"([\w.-]+=)(.*)")
VARIABLE = "<*>"
#: The first words of a template name its event (Drain keeps as many fixed): they never fold.
FOLD_FROM = 2
#: Templates fold when at least this many vary in the same word: two ("started", "finished") are
#: more often two events than one.
FOLD_MIN = 3
#: Words of a template, from FOLD_FROM, that may fold: the work stays linear in its length.
FOLD_WORDS = 64


def fold_templates(keys) -> dict:
    """{(level, template): (level, folded template)} for templates alike but for one word, which
    varies (a user name, a host): "Invalid user admin from <IP>" and "Invalid user <NUM> from <IP>"
    fold into "Invalid user <*> from <IP>", "rhost=<IP> user=root" and "rhost=<IP> user=git" into
    "rhost=<IP> user=<*>", where FOLD_MIN or more templates vary in that word. Each template folds
    on the word whose fellows are most (ties: the first); a template with none is kept. A function
    of the set of keys alone, so the templates of a file's parts, or of many files, fold alike
    whatever their order. Linear in the words: templates alike but for word i share the hashes of
    the words before it and after it."""
    keys = list(dict.fromkeys(keys))
    places = [_fold_places(key) for key in keys]
    fellows = Counter(shape for found in places for shape, _, _ in found)
    folded = {}
    for key, found in zip(keys, places):
        best = None
        for shape, i, token in found:
            if fellows[shape] >= FOLD_MIN and (best is None or fellows[shape] > fellows[best[0]]):
                best = (shape, i, token)
        if best is None:
            folded[key] = key
        else:
            tokens = key[1].split()
            tokens[best[1]] = best[2]
            folded[key] = (key[0], " ".join(tokens))
    return folded


def _fold_places(key: tuple) -> list:
    """(shape, index, folded word) of each word of a template that may vary: the shape is what the
    templates folding on that word share (the words before and after it, as hashes)."""
    tokens = key[1].split()
    n = len(tokens)
    last = min(n, FOLD_FROM + FOLD_WORDS)
    before = [0] * (last + 1)
    for i in range(last):
        before[i + 1] = hash((before[i], tokens[i]))
    after = [0] * (n + 1)
    for i in range(n - 1, FOLD_FROM - 1, -1):
        after[i] = hash((tokens[i], after[i + 1]))
    places = []
    for i in range(FOLD_FROM, last):
        m = _KEY_VALUE.fullmatch(tokens[i])
        token = m[1] + VARIABLE if m else VARIABLE
        places.append(((key[0], n, i, before[i], after[i + 1], token), i, token))
    return places
