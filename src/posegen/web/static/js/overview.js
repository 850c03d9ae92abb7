// Overview: draws the per-minute chart and refreshes the figures in place every 15 s.
// Data comes from the page itself (a JSON script element) and then from overview.json,
// which the session cookie authenticates; no key is ever in this script.
(function () {
  "use strict";
  var COLOURS = {
    "completed": "#1c7c3a", "partial": "#d08a00", "failed": "#b3261e",
    "cancelled": "#8a94a3", "in queue": "#0b63ce"
  };
  var dataEl = document.getElementById("overview-data");
  var tiles = document.getElementById("tiles");
  if (!dataEl || !tiles) { return; }
  var data = JSON.parse(dataEl.textContent);
  var chart = null;

  function pick(obj, path) {
    return path.split(".").reduce(function (o, k) { return o == null ? null : o[k]; }, obj);
  }
  function format(value, kind) {
    if (value === null || value === undefined) { return "—"; }
    if (kind === "percent") { return Math.round(value * 100) + " %"; }
    if (kind === "seconds") {
      if (value < 1) { return Math.round(value * 1000) + " ms"; }
      if (value < 120) { return value.toFixed(1) + " s"; }
      if (value < 7200) { return Math.round(value / 60) + " min"; }
      return (value / 3600).toFixed(1) + " h";
    }
    return String(value);
  }
  function fill(d) {
    document.querySelectorAll("[data-figure]").forEach(function (el) {
      var value = pick(d, el.getAttribute("data-figure"));
      el.textContent = format(value, el.getAttribute("data-format"));
      var above = el.getAttribute("data-bad-above");
      if (above !== null) { el.classList.toggle("bad", value > Number(above)); }
    });
  }
  function datasets(d) {
    var names = d.perMinute.order || Object.keys(d.perMinute.series);
    return names.map(function (name) {
      return { label: name, data: d.perMinute.series[name], backgroundColor: COLOURS[name] || "#555", stack: "s" };
    });
  }
  function draw(d) {
    var canvas = document.getElementById("per-minute-chart");
    if (!canvas || typeof Chart === "undefined") { return; }
    if (chart) {
      chart.data.labels = d.perMinute.labels;
      chart.data.datasets = datasets(d);
      chart.update("none");
      return;
    }
    chart = new Chart(canvas, {
      type: "bar",
      data: { labels: d.perMinute.labels, datasets: datasets(d) },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        scales: {
          x: { stacked: true, ticks: { maxTicksLimit: 12, autoSkip: true } },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }
        },
        plugins: { legend: { position: "bottom" } }
      }
    });
  }
  function refresh() {
    var period = tiles.getAttribute("data-period") || "24h";
    fetch("overview.json?period=" + encodeURIComponent(period), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
      .then(function (d) { fill(d); draw(d); })
      .catch(function () { /* keep the last figures; the next tick tries again */ });
  }
  draw(data);
  window.setInterval(refresh, 15000);
}());
