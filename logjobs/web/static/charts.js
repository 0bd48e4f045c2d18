// Stacked bar charts of data rendered into the page (no inline script: the pages forbid it).
// stackedBars(canvas id, data id, series key, colours by series, label formatter, y-axis title) draws
// {"unit", "labels", "series": [{<key>: name, "counts": [...]}]} one bar per label, stacked by series.
window.stackedBars = function (canvasId, dataId, key, colors, label, yTitle) {
  "use strict";
  var data = JSON.parse(document.getElementById(dataId).textContent);
  return new Chart(document.getElementById(canvasId), {
    type: "bar",
    data: {
      labels: data.labels.map(function (l) { return label(l, data.unit); }),
      datasets: data.series.map(function (s) {
        return {label: s[key], data: s.counts, backgroundColor: colors[s[key]] || "#999"};
      })
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: {
        x: {stacked: true, title: {display: true, text: "UTC, per " + data.unit}},
        y: {stacked: true, beginAtZero: true, title: {display: true, text: yTitle}, ticks: {precision: 0}}
      }
    }
  });
};
