// Lines per level over time: the Messages page and a file's page.
stackedBars("levels-chart", "levels-data", "level",
            {TRACE: "#adb5bd", DEBUG: "#6c757d", INFO: "#17a2b8", WARN: "#ffc107", ERROR: "#dc3545", FATAL: "#6f1d1b",
             "no level": "#ced4da"},
            function (l) { return l.replace("T", " "); }, "lines");
