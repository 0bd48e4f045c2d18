// The overview's chart: state changes per time bucket, stacked by state (data rendered into the page).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("timeline-data").textContent);
  var colors = {queued: "#6c757d", scheduled: "#17a2b8", started: "#007bff", finished: "#28a745", failed: "#dc3545"};
  var short = data.unit === "day" ? function (l) { return l.slice(0, 10); } : function (l) { return l.slice(11); };
  new Chart(document.getElementById("timeline"), {
    type: "bar",
    data: {
      labels: data.labels.map(short),
      datasets: data.series.map(function (s) {
        return {label: s.state, data: s.counts, backgroundColor: colors[s.state] || "#999"};
      })
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: {
        x: {stacked: true, title: {display: true, text: "UTC, per " + data.unit}},
        y: {stacked: true, beginAtZero: true, title: {display: true, text: "state changes"}, ticks: {precision: 0}}
      }
    }
  });
})();
