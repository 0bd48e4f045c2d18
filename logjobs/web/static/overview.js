// The overview's chart: state changes per time bucket, stacked by state.
stackedBars("timeline", "timeline-data", "state",
            {queued: "#6c757d", scheduled: "#17a2b8", started: "#007bff", finished: "#28a745", failed: "#dc3545"},
            function (l, unit) { return unit === "day" ? l.slice(0, 10) : l.slice(11); }, "state changes");
