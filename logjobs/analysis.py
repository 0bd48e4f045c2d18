"""Levels, per-minute counts and the most frequent messages of the lines a scan reads.

Pure: no Redis, RQ or Peewee. An Analyzer is fed the byte stream of a file or of a line-aligned byte
range, in pieces of any size, and returns an Analysis. Feeding the same bytes in other pieces gives the
same Analysis, and the Analyses of contiguous ranges, merged in order, equal the Analysis of the whole
file as long as each range kept under MAX_TEMPLATES templates.

Levels. These spellings, in UPPER, Capitalised or lower case, map to LEVELS:
    FATAL  fatal critical crit emergency emerg alert panic
    ERROR  error err severe
    WARN   warning warn
    INFO   information info notice
    DEBUG  debug dbg fine
    TRACE  trace finer finest
A word is the level of its line only where it stands as one:
  - a text line: the first level word among the first three tokens after a leading timestamp (host,
    process, thread or logger tokens may come first; "-" and "|" separators are no tokens), or the
    first token of a line without one. Bare or wrapped as [error], [core:error], (error), <error>,
    level=error, and followed by a blank, ":" or the line end: `ERROR:root:msg` is ERROR, while
    `... INFO worker: retry after ERROR` is INFO and `... worker: retry after ERROR` has no level.
  - a syslog line starting with <PRI>: severity PRI % 8, 0-2 FATAL, 3 ERROR, 4 WARN, 5-6 INFO, 7 DEBUG.
  - a JSON line (starting with "{"): the first "level", "severity", "lvl", "loglevel" or "log.level" key
    whose value is a level word or a bunyan/pino number 10..60 (TRACE, DEBUG, INFO, WARN, ERROR, FATAL).
Stack-trace lines (they start with a blank or "Caused by:") and access-log lines have no level.

Time. A leading timestamp (after `[`, `time=` or `ts=`, if any) may be ISO 8601 / RFC 3339 (T or space,
"-" or "/" in the date, fraction with "." or ",", zone Z, UTC, +hh, +hhmm or +hh:mm, optionally after a
blank), RFC 3164 syslog `May  1 12:03:04` (its year is the Analyzer's `year`; without one such lines
get no minute), ctime `Wed Oct 11 14:32:52 2000` (Apache error log), or epoch seconds (10 digits,
13 for milliseconds). RFC 5424 and JSON ("ts", "time", "timestamp", "@timestamp": ISO string or epoch
number) have their own places, access logs their `[10/Oct/2000:13:55:36 -0700]`. Timestamps without a
zone are taken as UTC. Minutes are UTC strings "2024-05-01T12:03". Only lines with a level and a
timestamp count in `minutes`; lines without a timestamp still count in `levels` and in templates.

Templates. ERROR and FATAL lines, and lines holding one of the scan's patterns (grep -F literals,
case-sensitive bytes; a pattern may hold several alternatives separated by "\\n"; an empty one matches
every line), are grouped by (level, template): the message after the timestamp and level (a JSON
line's "msg"/"message"/"error"/"err" string, a logfmt line's msg=, an access-log line's
method, path and status), on its first TEMPLATE_BYTES bytes, with quoted strings, timestamps, URLs,
e-mail addresses, UUIDs, IP addresses (with ports), paths, hex ids and numbers masked as <STR>, <TS>,
<URL>, <EMAIL>, <UUID>, <IP>, <PATH>, <HEX>, <NUM>. Each keeps its count, the first line seen as its
example and its counts per minute (of lines with a timestamp, with or without a level). An Analysis
keeps the first MAX_TEMPLATES templates in file order; the lines of any later one only add to
`overflow`.

Bounded work per line: levels, timestamps and templates only look at a line's first LINE_HEAD bytes,
patterns at the whole line; memory stays O(piece) whatever the line length.
"""

import dataclasses
import datetime
import os
import re
from collections import Counter, defaultdict
from itertools import chain, compress, repeat
from operator import add, itemgetter

try:  # SIMD substring search: counts pattern hits several times faster than bytes.count
    import stringzilla as _sz
except ImportError:  # pragma: no cover
    _sz = None

LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
SEVERE = ("ERROR", "FATAL")
"""Levels whose lines are templated whatever the patterns."""

MAX_TEMPLATES = 1000
"""Distinct (level, template) pairs an Analysis keeps; later ones only add to its overflow count."""

LINE_HEAD = 4096
"""Bytes of a line that levels, timestamps, templates and examples ever look at."""

TEMPLATE_BYTES = 1024
"""Bytes of a message that its template is made of."""

EXAMPLE_CHARS = 500
"""Characters of the example line kept with a template."""

CHUNK_SIZE = 1024 * 1024
"""Lines are analysed this many bytes at a time: bounds the temporary lists of one step."""

_SPELLINGS = {
    "FATAL": ("fatal", "critical", "crit", "emergency", "emerg", "alert", "panic"),
    "ERROR": ("error", "err", "severe"),
    "WARN": ("warning", "warn"),
    "INFO": ("information", "info", "notice"),
    "DEBUG": ("debug", "dbg", "fine"),
    "TRACE": ("trace", "finer", "finest"),
}
_LEVEL_OF = {spelling: level for level, words in _SPELLINGS.items() for word in words
             for spelling in (word.upper().encode(), word.capitalize().encode(), word.encode())}
_LEVEL_OF.update({b"10": "TRACE", b"20": "DEBUG", b"30": "INFO", b"40": "WARN", b"50": "ERROR", b"60": "FATAL"})
_PRI_LEVEL = ("FATAL", "FATAL", "FATAL", "ERROR", "WARN", "INFO", "INFO", "DEBUG")
_PRI_LEVEL_OF = {str(pri).encode(): _PRI_LEVEL[pri % 8] for pri in range(192)}
_SEVERE_WORDS = frozenset(word for word, level in _LEVEL_OF.items() if level in SEVERE)
_SEVERE_PRIS = frozenset(pri for pri, level in _PRI_LEVEL_OF.items() if level in SEVERE)
_UTC = (b"", b"Z", b"UTC")
_MONTHS = {m.encode(): i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
_MINUTE_CACHE = 100_000
_TEMPLATE_CACHE = 50_000


def _alternation(words) -> bytes:
    """The words as a trie-shaped alternation, longest first: sre then rejects a position on one byte."""
    trie: dict = {}
    for word in words:
        node = trie
        for i in range(len(word)):
            node = node.setdefault(word[i:i + 1], {})
        node[b""] = {}

    def depth(node):
        return max((1 + depth(child) for key, child in node.items() if key), default=0)

    def emit(node):
        alts = [re.escape(key) + emit(child)
                for key, child in sorted(node.items(), key=lambda kv: -depth(kv[1])) if key]
        alts += [b""] * (b"" in node)
        return alts[0] if len(alts) == 1 else b"(?:" + b"|".join(alts) + b")"
    return emit(trie)


_WORDS = [w for w in _LEVEL_OF if not w.isdigit()]
_ANY_WORD = _alternation(_WORDS)
_SEVERE_WORD = _alternation([w for w in _WORDS if w in _SEVERE_WORDS])
_OTHER_WORD = _alternation([w for w in _WORDS if w not in _SEVERE_WORDS])

# Every quantifier is bounded, so nothing here reads past a line's first LINE_HEAD bytes. Optional
# parts are written (?:x|), which sre runs faster than (?:x)?; word lists are tries, so a position that
# holds no level word is rejected on its first byte.
_SEP = rb"[ \t]{1,16}(?:[-|][ \t]{1,16}|)"
_STAMP_FORMS = (
    rb"\d{4}[-/]\d\d[-/]\d\d[T ]\d\d:\d\d"                                  # ISO 8601, Python, nginx
    rb"|[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d{1,9}|) \d{4}"  # ctime (to the second)
    rb"|[A-Z][a-z]{2} [ \d]\d \d\d:\d\d"                                    # RFC 3164 syslog
    rb"|\d{10}(?=(?:\d{3}|)(?:\.\d{1,9}|)[ \t\]\"])"                         # epoch seconds or millis
    rb"|\d\d:\d\d(?=:\d\d)"                                                  # time of day: no minute
)
_STAMP = (rb"(?:\[|t(?:imestamp|ime|s|)=\"?|)(" + _STAMP_FORMS + rb")[:.,\d]{0,16}"
          rb"(Z|[ ]?[+-]\d\d(?::?\d\d|)|[ ]UTC|)[\]\"]?" + _SEP)
_TOKEN = rb"[^ \t\n]{1,64}" + _SEP
_OPEN = rb"(?:[\[(<](?:[\w-]{1,32}:|)|l(?:evel|vl|oglevel)=\"?|severity=\"?|)"
_CLOSE = rb"[ ]?[\])>\"]?(?![^:\s])"
_MSG_START = rb":?[ \t]{0,16}[-|]?[ \t]{0,16}"

_TEXT = re.compile(  # head (up to the message), stamp, zone, ERROR/FATAL word, other word, message
    rb"\n((?:" + _STAMP + rb"(?:|" + _TOKEN + rb"(?:|" + _TOKEN + rb"))|)"  # up to 2 tokens, fewest first
    + _OPEN + rb"(?:(" + _SEVERE_WORD + rb")|(" + _OTHER_WORD + rb"))" + _CLOSE
    + rb"(?(4)" + _MSG_START + rb"))(?(4)([^\n]*))")
_TEXT_MSG_START = re.compile(_MSG_START)
_JSON = re.compile(  # level word, level number, stamp (ISO or epoch), zone, the line after "{"
    rb'\n\{(?=[^\n]{0,2048}?"(?:level|severity|lvl|loglevel|log\.level)"[ \t]{0,4}:[ \t]{0,4}'
    rb'(?:"(' + _ANY_WORD + rb')"|([1-6]0)(?=[ \t,}])))'
    rb'(?:(?=[^\n]{0,2048}?"(?:ts|time|timestamp|@timestamp)"[ \t]{0,4}:[ \t]{0,4}"?'
    rb'(\d{4}-\d\d-\d\d[T ]\d\d:\d\d|\d{10}(?=(?:\d{3}|)(?:\.\d{1,9}|)[ \t,}]))[:.,\d]{0,16}'
    rb'(Z|[+-]\d\d(?::?\d\d|)|)[ \t,}"])|)([^\n]*)')
_JSON_MESSAGE = re.compile(rb'"(?:msg|message|error|err)"[ \t]{0,4}:[ \t]{0,4}"((?:[^"\\\n]|\\.){0,2048})"')
_PRI = re.compile(  # head, PRI, RFC 5424 stamp and zone, RFC 3164 stamp, message
    rb"\n(<(\d{1,3})>(?:1 (?:(\d{4}-\d\d-\d\dT\d\d:\d\d)[:.,\d]{0,16}(Z|[+-]\d\d:\d\d)|-)"
    rb" [^ \n]{1,255} [^ \n]{1,48} [^ \n]{1,128} [^ \n]{1,32} (?:-|(?:\[(?:[^\]\\\n]|\\.){0,256}\]){1,4}) ?"
    rb"|([A-Z][a-z]{2} [ \d]\d \d\d:\d\d):\d\d (?:[^ \n:]{1,255} (?=[^ \n]{1,64}:)|)|))([^\n]*)")
_ACCESS = re.compile(  # stamp, zone, method, path, status
    rb'\n[^ \n]{1,255} [^ \n]{1,64} [^ \n]{1,255} \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d):\d\d ([+-]\d{4})\] '
    rb'"(?:([A-Z]{1,16}) ([^ "?\n]{0,1024})[^"\n]{0,2048}|[^"\n]{0,2048})" (\d{3})')
_STAMP_ONLY = re.compile(rb"\n" + _STAMP)
_LOGFMT_MESSAGE = re.compile(rb'(?:^|[ \t])(?:msg|message)=(?:"((?:[^"\\\n]|\\.)*)"|([^ \t\n]*))')

# Masks, in order. sre skips ahead fast only when a pattern starts with one byte or byte class, so each
# does; those that would still try most positions run only on messages holding their trigger.
_HEX4 = rb"[0-9a-fA-F]{1,4}"
_MASKS = tuple((trigger, re.compile(rx), placeholder) for trigger, rx, placeholder in (
    (None, rb'"(?:[^"\\\n]|\\.)*"', b"<STR>"),
    (None, rb"'(?<!\w')[^'\n]*'(?!\w)", b"<STR>"),
    (None, rb"\d(?:\d{3}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:[.,]\d{1,9}|)|)(?:Z|[+-]\d\d:?\d\d|)"
           rb"|\d:\d\d:\d\d(?:[.,]\d{1,9}|)|\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d(?: [+-]\d{4}|))", b"<TS>"),
    (b"://", rb"[A-Za-z][A-Za-z0-9+.-]{0,15}://[^\s\"'<>]*", b"<URL>"),
    (b"@", rb"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+", b"<EMAIL>"),
    (b"::", rb"\[[0-9a-fA-F:.]{2,45}\](?::\d{1,5}|)|(?<![\w:.])(?=[0-9a-fA-F:]*[0-9a-fA-F])(?:"
            rb"(?:" + _HEX4 + rb":){7}" + _HEX4 + rb"|(?:" + _HEX4 + rb"(?::" + _HEX4 + rb"){0,6}|)::"
            rb"(?:" + _HEX4 + rb"(?::" + _HEX4 + rb"){0,6}|))(?![\w:])", b"<IP>"),
    (None, rb"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?::\d{1,5}|)(?!\.?\d)", b"<IP>"),
    (None, rb"/(?<![\w.:/~-]/)[\w.@%+~-]+(?:/[\w.@%+~-]*)+", b"<PATH>"),
    (b":\\", rb"[A-Za-z]:\\[^\s\"'<>]*", b"<PATH>"),
    (b"-", rb"[0-9a-fA-F][0-9a-fA-F]{7}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", b"<UUID>"),
    (None, rb"0x[0-9a-fA-F]+", b"<HEX>"),
    (None, rb"[0-9a-fA-F](?<![\w-][0-9a-fA-F])(?:(?<=[a-fA-F])|(?=\d*[a-fA-F]))[0-9a-fA-F]{7,}(?![\w-])", b"<HEX>"),
    (None, rb"\d(?<![\w.]\d)\d*(?:\.\d+|)", b"<NUM>"),
))
_PATH_MASKS = _MASKS[-4:]  # UUID, hex and numbers, for the path of an access-log line

_HEAD, _WORD, _MSG = itemgetter(0), itemgetter(3), itemgetter(5)   # of _TEXT rows
_TEXT_KEY, _TEXT_STAMP = itemgetter(1, 2, 3, 4), itemgetter(1, 2)
_JSON_KEY = itemgetter(2, 3, 0, 1)                                    # of _JSON rows
_STAMP_OF = itemgetter(0, 1)                                          # of those keys
_RAW_KEYS = 200_000
NL = b"\n"


@dataclasses.dataclass
class Message:
    """One template's lines: how many, the first one, and how many per minute (of those with a time)."""

    count: int
    example: str
    minutes: dict[str, int]


@dataclasses.dataclass
class Analysis:
    """What the lines of a file or range hold: line counts per level, per minute and level, templates.

    `messages` maps (level or None, template) to its Message, in the order first seen.
    """

    levels: dict[str, int] = dataclasses.field(default_factory=dict)
    minutes: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    messages: dict[tuple[str | None, str], Message] = dataclasses.field(default_factory=dict)
    overflow: int = 0

    def to_dict(self) -> dict:
        """A JSON-simple dict; from_dict() reads it back."""
        return {
            "levels": dict(self.levels),
            "minutes": {m: dict(self.minutes[m]) for m in sorted(self.minutes)},
            "messages": [{"level": level, "template": template, "count": msg.count, "example": msg.example,
                          "minutes": dict(msg.minutes)} for (level, template), msg in self.messages.items()],
            "overflow": self.overflow,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Analysis":
        return cls({k: int(n) for k, n in d["levels"].items()},
                   {m: dict(by_level) for m, by_level in d["minutes"].items()},
                   {(e["level"], e["template"]): Message(e["count"], e["example"], dict(e["minutes"]))
                    for e in d["messages"]},
                   d.get("overflow", 0))

    def merge(self, other: "Analysis", max_templates: int = MAX_TEMPLATES) -> "Analysis":
        """This Analysis followed by `other` (the next range of the file), as one; neither changes.

        Exact while `other` kept all its templates (no overflow): examples are the earliest ones, and
        the templates kept are the first max_templates in file order, as in a single pass.
        """
        out = Analysis(Counter(self.levels), defaultdict(Counter), {}, self.overflow + other.overflow)
        out.levels.update(other.levels)
        for minutes in (self.minutes, other.minutes):
            for m, by_level in minutes.items():
                out.minutes[m].update(by_level)
        for key, msg in self.messages.items():
            out.messages[key] = Message(msg.count, msg.example, dict(msg.minutes))
        for key, msg in other.messages.items():
            mine = out.messages.get(key)
            if mine is None and len(out.messages) < max_templates:
                out.messages[key] = Message(msg.count, msg.example, dict(msg.minutes))
            elif mine is None:
                out.overflow += msg.count
            else:
                mine.count += msg.count
                for m, n in msg.minutes.items():
                    mine.minutes[m] = mine.minutes.get(m, 0) + n
        out.levels = dict(out.levels)
        out.minutes = {m: dict(by_level) for m, by_level in out.minutes.items()}
        return out

    def top(self, n: int = 10, since=None, until=None, levels=None) -> list[dict]:
        """The n most frequent templates, as dicts: level, template, count, example.

        With `since` and/or `until` (minute strings "2024-05-01T12:03" or datetimes, UTC when naive),
        counts are those of the lines timestamped in [since, until); templates left with none drop out.
        `levels` keeps only templates of those levels (None stands for pattern lines without a level).
        Ties keep the order first seen.
        """
        lo, hi = _minute_bound(since), _minute_bound(until)
        wanted = None if levels is None else set(levels)
        rows = []
        for (level, template), msg in self.messages.items():
            if wanted is not None and level not in wanted:
                continue
            count = msg.count if lo is None and hi is None else sum(
                k for m, k in msg.minutes.items() if (lo is None or m >= lo) and (hi is None or m < hi))
            if count:
                rows.append({"level": level, "template": template, "count": count, "example": msg.example})
        rows.sort(key=lambda row: -row["count"])
        return rows[:n]


class Analyzer:
    """Analyse a byte stream fed in pieces: feed() them in order, then call finish() once.

    `patterns` are the scan's patterns; `year` dates RFC 3164 syslog timestamps (the caller passes the
    file's mtime year).
    """

    def __init__(self, patterns=(), year: int | None = None, max_templates: int = MAX_TEMPLATES):
        alts = {a for p in patterns for a in os.fsencode(p).split(NL)}
        self._every = b"" in alts
        self._alts = sorted(alts - {b""})
        self._keep = max(map(len, self._alts), default=1) - 1
        self._hits = re.compile(b"(?:" + b"|".join(map(re.escape, self._alts)) + rb")[^\n]*") if self._alts else None
        self._year = year
        self._max = max_templates
        self._raw: Counter = Counter()          # (stamp, zone, word, word) -> lines, folded into _pairs
        self._pairs: Counter = Counter()        # (minute or None, level or None) -> lines
        self._messages: dict = {}
        self._counts: Counter = Counter()       # key -> lines, folded into messages by finish()
        self._key_minutes: Counter = Counter()  # (key, minute) -> lines, likewise
        self._overflow = 0
        self._head, self._len, self._hit, self._tail = b"", 0, False, b""
        self._minute_of: dict = {}
        self._template_of: dict = {}

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
            cut = hi if hi - lo <= CHUNK_SIZE else data.rfind(NL, lo, lo + CHUNK_SIZE) + 1
            if cut <= lo:  # a line longer than a chunk
                cut = data.find(NL, lo + CHUNK_SIZE) + 1
            self._chunk(data, lo, cut)
            lo = cut
        self._grow(data, hi, len(data))

    def finish(self) -> Analysis:
        """The Analysis of everything fed; a last line without "\\n" counts, as in grep."""
        if self._len:
            self._end_line()
        self._fold()
        for key, n in self._counts.items():
            self._messages[key].count += n
        for (key, minute), n in self._key_minutes.items():
            if minute is not None:
                minutes = self._messages[key].minutes
                minutes[minute] = minutes.get(minute, 0) + n
        self._counts.clear()
        self._key_minutes.clear()
        levels: Counter = Counter()
        minutes: defaultdict = defaultdict(dict)
        for (minute, level), n in self._pairs.items():
            if level:
                levels[level] += n
                if minute:
                    minutes[minute][level] = n
        self._pairs.clear()
        return Analysis({level: levels[level] for level in LEVELS if levels[level]},
                        {m: minutes[m] for m in sorted(minutes)}, self._messages, self._overflow)

    # -- one line at a time: the first line of each piece, and lines straddling pieces

    def _grow(self, data: bytes, lo: int, hi: int) -> None:
        """Add data[lo:hi] to the open line: keep its head, and whether it holds a pattern."""
        if lo >= hi:
            return
        if len(self._head) < LINE_HEAD:
            self._head += data[lo:min(hi, lo + LINE_HEAD - len(self._head))]
        if self._alts and not self._hit:
            edge = self._tail + data[lo:lo + self._keep]  # where a hit may straddle the pieces
            self._hit = any(a in edge or data.find(a, lo, hi) >= 0 for a in self._alts)
            if self._keep:
                self._tail = (self._tail + data[max(lo, hi - self._keep):hi])[-self._keep:]
        self._len += hi - lo

    def _end_line(self) -> None:
        line, hit = self._head, self._hit or self._every
        self._head, self._len, self._hit, self._tail = b"", 0, False, b""
        level, stamp, src, template = _classify(line)
        minute = self._minutes_of([stamp])[0]
        self._pairs[minute, level] += 1
        if level in SEVERE or hit:
            if template is None:
                template = self._templates([src])[0]
            self._account([_Stream([(level, template)], [minute], [line])])

    # -- whole lines in bulk: regexes over a chunk; Python runs per distinct key, C per line

    def _chunk(self, data: bytes, lo: int, hi: int) -> None:
        """Analyse the whole lines data[lo:hi] (data[lo - 1] and data[hi - 1] are newlines)."""
        start = lo - 1
        rows = _TEXT.findall(data, start, hi)
        self._tally(Counter(map(_TEXT_KEY, rows)))
        severe = list(filter(_WORD, rows))
        streams = []
        if severe:
            msgs = list(map(_MSG, severe))
            streams.append(_Stream(list(zip(map(_LEVEL_OF.__getitem__, map(_WORD, severe)), self._templates(msgs))),
                                   self._minutes_of(list(map(_TEXT_STAMP, severe))),
                                   list(map(add, map(_HEAD, severe), msgs))))
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
        self._tally(Counter(map(_JSON_KEY, rows)))
        severe = [row for row in rows if (row[0] or row[1]) in _SEVERE_WORDS]
        if not severe:
            return []
        lines = [b"{" + row[4] for row in severe]
        return [_Stream(list(zip([_LEVEL_OF[row[0] or row[1]] for row in severe],
                                 self._templates([_json_message(line[:LINE_HEAD]) for line in lines]))),
                        self._minutes_of([row[2:4] for row in severe]), lines)]

    def _pri(self, data: bytes, start: int, hi: int) -> list:
        rows = _PRI.findall(data, start, hi)
        self._tally(Counter((iso + syslog, zone, b"<", pri) for _, pri, iso, zone, syslog, _ in rows))
        severe = [row for row in rows if row[1] in _SEVERE_PRIS]
        if not severe:
            return []
        return [_Stream(list(zip([_PRI_LEVEL_OF[row[1]] for row in severe],
                                 self._templates([row[5] for row in severe]))),
                        self._minutes_of([(row[2] + row[4], row[3]) for row in severe]),
                        [row[0] + row[5] for row in severe])]

    def _pattern_lines(self, data: bytes, start: int, hi: int, severe_streams: list) -> list:
        """The lines holding a pattern that are not ERROR/FATAL (those are templated already)."""
        severe = [line for stream in severe_streams for line in stream.lines]
        if self._every:
            found, pos = [], start + 1
            for line in data[start + 1:hi - 1].split(NL):
                found.append((pos, line))
                pos += len(line) + 1
        else:
            hits = sum(_count(data, a, start, hi) for a in self._alts)
            if hits == sum(sum(map(bytes.count, severe, repeat(a))) for a in self._alts):
                return []  # every hit lies in a severe line
            found = []
            for m in self._hits.finditer(data, start, hi):
                lo = data.rfind(NL, start, m.start()) + 1
                found.append((lo, data[lo:m.end()]))
        severe = set(severe)
        rows = [(pos, line, *_classify(line[:LINE_HEAD])) for pos, line in found if line not in severe]
        if not rows:
            return []
        masked = iter(self._templates([src for *_, src, template in rows if template is None]))
        keys = [(level, next(masked) if template is None else template) for _, _, level, _, _, template in rows]
        return [_Stream(keys, self._minutes_of([row[3] for row in rows]), [row[1] for row in rows],
                        [row[0] for row in rows])]

    # -- accounting

    def _tally(self, raw: Counter) -> None:
        """Add one step's line counts per (stamp, zone, word, word); C loops only."""
        self._raw.update(chain.from_iterable(map(repeat, raw.keys(), raw.values())))
        if len(self._raw) > _RAW_KEYS:
            self._fold()

    def _fold(self) -> None:
        """Turn the counts per (stamp, zone, word, word) into counts per (minute, level)."""
        raw, pairs = self._raw, self._pairs
        for (stamp, zone, word, other), minute, n in zip(raw, self._minutes_of(list(map(_STAMP_OF, raw))),
                                                         raw.values()):
            level = _PRI_LEVEL_OF.get(other) if word == b"<" else _LEVEL_OF[word or other]
            pairs[minute, level] += n
        raw.clear()

    def _minutes_of(self, stamps: list) -> list:
        """The UTC minute (or None) of each (stamp, zone) pair; parsed once per distinct pair."""
        cache = self._minute_of
        todo = set(stamps).difference(cache)
        if todo:
            if len(cache) + len(todo) > _MINUTE_CACHE:
                cache.clear()
                todo = set(stamps)
            for stamp in todo:
                cache[stamp] = _to_minute(stamp, self._year)
        return list(map(cache.__getitem__, stamps))

    def _templates(self, srcs: list) -> list:
        """The template of each message; masked once per distinct message, all at once."""
        cache = self._template_of
        todo = list(set(srcs).difference(cache))
        if todo:
            if len(cache) + len(todo) > _TEMPLATE_CACHE:
                cache.clear()
                todo = list(set(srcs))
            cache.update(zip(todo, _mask_all(todo)))
        return list(map(cache.__getitem__, srcs))

    def _account(self, streams: list, data: bytes = b"", start: int = 0, hi: int = 0) -> None:
        """Count the templated lines of one step (streams of lines, each in file order).

        Templates new to the Analysis are admitted in file order while there is room; when they come
        from more than one stream, their first lines are located in data[start:hi] to learn that order.
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
                where = [(streams[s].position(i, data, start, hi) if several else i, s, i) for s, i in places]
                placed.append((min(where), key))
            placed.sort(key=itemgetter(0))
            for (_, s, i), key in placed[:room]:
                messages[key] = Message(0, _example(streams[s].lines[i]), {})
        for stream in streams:
            kept = list(map(messages.__contains__, stream.keys))
            self._overflow += kept.count(False)
            self._counts.update(compress(stream.keys, kept))
            self._key_minutes.update(compress(zip(stream.keys, stream.minutes), kept))


class _Stream:
    """Templated lines of one step from one source, in file order: keys, minutes, the lines themselves."""

    __slots__ = ("keys", "minutes", "lines", "offsets")

    def __init__(self, keys, minutes, lines, offsets=None):
        self.keys, self.minutes, self.lines, self.offsets = keys, minutes, lines, offsets

    def position(self, i: int, data: bytes, start: int, hi: int) -> int:
        """Where line i starts in data; identical lines classify alike, so the first copy is line i."""
        if self.offsets is not None:
            return self.offsets[i]
        return data.find(NL + self.lines[i] + NL, start, hi) + 1


def analyse(data: bytes, patterns=(), year: int | None = None) -> Analysis:
    """The Analysis of a whole byte string (handy in tests and at the REPL)."""
    analyzer = Analyzer(patterns, year)
    analyzer.feed(data)
    return analyzer.finish()


def _classify(line: bytes):
    """(level, (stamp, zone), message, template) of one line's head, exactly as the bulk path sees it.

    The template is only set for access-log lines (method, path and status); others get it from their
    message.
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
        return _LEVEL_OF[other], (stamp, zone), buf[_TEXT_MSG_START.match(buf, m.end()).end():], None
    if m := _ACCESS.match(buf):
        stamp, zone, method, path, status = m.groups(b"")
        request = method + b" " + _mask(path, _PATH_MASKS) if method else b"<STR>"
        return None, (stamp, zone), None, (request + b" " + status).decode("utf-8", "replace")
    if m := _STAMP_ONLY.match(buf):
        return None, m.groups(b""), buf[m.end():], None
    return None, (b"", b""), line, None


def _json_message(line: bytes) -> bytes:
    m = _JSON_MESSAGE.search(line)
    return m[1] if m else line


def _mask(text: bytes, masks) -> bytes:
    for trigger, rx, placeholder in masks:
        if trigger is None or trigger in text:
            text = rx.sub(placeholder, text)
    return text


def _mask_all(srcs: list) -> list:
    """Templates of messages; masks without a trigger run once over all of them joined by newlines."""
    texts = []
    for src in srcs:
        src = src[:TEMPLATE_BYTES]
        if b"msg=" in src or b"message=" in src:
            m = _LOGFMT_MESSAGE.search(src)
            if m:
                src = m[1] if m[1] is not None else m[2]
        texts.append(src)
    for trigger, rx, placeholder in _MASKS:
        if trigger is None:
            texts = rx.sub(placeholder, NL.join(texts)).split(NL)
        else:
            texts = [rx.sub(placeholder, t) if trigger in t else t for t in texts]
    return [t.decode("utf-8", "replace").strip() for t in texts]


def _example(line: bytes) -> str:
    return line[:EXAMPLE_CHARS * 4].decode("utf-8", "replace")[:EXAMPLE_CHARS].rstrip("\r\n")


def _to_minute(stamp: tuple, year: int | None) -> str | None:
    """The UTC minute "YYYY-MM-DDTHH:MM" of a (stamp, zone) pair as the regexes capture it, or None."""
    text, zone = stamp
    zone = zone.strip()
    try:
        if len(text) == 16 and text[4:5] in b"-/":  # 2024-05-01T12:03, 2024/05/01 12:03
            y, mo, d, h, mi = int(text[:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16])
            if zone in _UTC and 1 <= mo <= 12 and 1 <= d <= _days(y, mo) and h < 24 and mi < 60:
                return f"{text[:10].decode().replace('/', '-')}T{text[11:16].decode()}"  # the usual case
            t = datetime.datetime(y, mo, d, h, mi)
        elif len(text) == 10 and text.isdigit():  # epoch seconds
            t = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=int(text))
        elif len(text) >= 24:  # ctime: Wed Oct 11 14:32:52[.123] 2000
            t = datetime.datetime(int(text[-4:]), _MONTHS[text[4:7]], int(text[8:10]), int(text[11:13]),
                                  int(text[14:16]))
        elif len(text) == 17:  # common log format: 10/Oct/2000:13:55
            t = datetime.datetime(int(text[7:11]), _MONTHS[text[3:6]], int(text[:2]), int(text[12:14]),
                                  int(text[15:17]))
        elif len(text) == 12 and year:  # RFC 3164: May  1 12:03
            t = datetime.datetime(year, _MONTHS[text[:3]], int(text[4:6]), int(text[7:9]), int(text[10:12]))
        else:
            return None
        if zone not in _UTC:
            hours, minutes = int(zone[1:3]), int(zone[-2:]) if len(zone) > 3 else 0
            if hours > 23 or minutes > 59:
                return None
            offset = datetime.timedelta(hours=hours, minutes=minutes)
            t = t - offset if zone[:1] == b"+" else t + offset
    except (ValueError, KeyError, OverflowError):
        return None
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}"


def _days(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _minute_bound(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(datetime.timezone.utc)
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}"


def _find(data: bytes, needle: bytes, start: int, hi: int) -> bool:
    if _sz is not None:
        return _sz.Str(data)[start:hi].find(needle) >= 0
    return data.find(needle, start, hi) >= 0


def _count(data: bytes, needle: bytes, start: int, hi: int) -> int:
    if _sz is not None:
        return _sz.Str(data)[start:hi].count(needle)
    return data.count(needle, start, hi)
