"""`logjobs formats --test FILE`: which format a file is read with, and how its first lines read."""

import datetime

from . import analysis, formats, scanner
from .access import Roots


def probe(path, known, lines, roots=()):
    """{"format": the name of the format the file's head fits, or None, "lines": [{"level",
    "minute", "template", "fits"}] for its first `lines` lines, each read as a scan reads it (a
    time without a year in the year of the file's last change)}."""
    st, _, head = scanner.peek(path, formats.DETECT_BYTES, Roots.of(roots))
    year = datetime.datetime.fromtimestamp(st.st_mtime, datetime.UTC).year
    fmt = formats.detect(head, known)
    shown = []
    for line in head.split(b"\n")[:lines]:
        if line.strip():
            level, minute, template, fits = analysis.read_line(line.rstrip(b"\r"), fmt, year)
            shown.append(
                {"level": level, "minute": minute or None, "template": template, "fits": fits}
            )
    return {"format": fmt.name if fmt else None, "lines": shown}
