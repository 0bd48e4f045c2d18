// Lines per level over time (data rendered into the page): the Messages page and a file's page.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("levels-data").textContent);
  var colors = {TRACE: "#adb5bd", DEBUG: "#6c757d", INFO: "#17a2b8", WARN: "#ffc107", ERROR: "#dc3545", FATAL: "#6f1d1b"};
  new Chart(document.getElementById("levels-chart"), {
    type: "bar",
    data: {
      labels: data.labels.map(function (l) { return l.replace("T", " "); }),
      datasets: data.series.map(function (s) {
        return {label: s.level, data: s.counts, backgroundColor: colors[s.level] || "#999"};
      })
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: {
        x: {stacked: true, title: {display: true, text: "UTC, per " + data.unit}},
        y: {stacked: true, beginAtZero: true, title: {display: true, text: "lines"}, ticks: {precision: 0}}
      }
    }
  });
})();
