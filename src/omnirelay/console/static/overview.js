// Draws the overview charts from /console/api/overview with the vendored Chart.js (chart.umd.min.js).
"use strict";
(function () {
  var COLORS = { DELIVERED: "#1f8a4c", UNDELIVERABLE: "#c2412d", REJECTED: "#e07a5f", EXPIRED: "#b7791f",
    PENDING: "#2f6fde" };

  function minute(ts) {
    var d = new Date(ts * 1000);
    return ("0" + d.getUTCHours()).slice(-2) + ":" + ("0" + d.getUTCMinutes()).slice(-2);
  }

  // colour by outcome; each channel a different opacity of it
  function colorFor(name, channels) {
    var parts = name.split(" ");
    var base = COLORS[parts[1]] || "#5b6472";
    var alpha = [1, 0.6, 0.35][channels.indexOf(parts[0]) % 3];
    var n = parseInt(base.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function draw(data) {
    var common = { responsive: true, maintainAspectRatio: false, animation: false };
    var names = Object.keys(data.perMinute);
    var channels = names.map(function (n) { return n.split(" ")[0]; })
      .filter(function (c, i, all) { return all.indexOf(c) === i; });
    new Chart(document.getElementById("perMinute"), {
      type: "bar",
      data: {
        labels: data.buckets.map(minute),
        datasets: names.map(function (name) {
          return { label: name, data: data.perMinute[name], backgroundColor: colorFor(name, channels), stack: "all" };
        })
      },
      options: Object.assign({}, common, {
        scales: { x: { stacked: true, title: { display: true, text: "minute (UTC)" } },
                  y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } }
      })
    });
    new Chart(document.getElementById("failover"), {
      type: "bar",
      data: {
        labels: data.failover.map(function (f) { return "step " + f.step + " " + f.channel; }),
        datasets: [{ label: "failed over (%)", backgroundColor: "#e07a5f",
          data: data.failover.map(function (f) { return Math.round(f.rate * 1000) / 10; }) }]
      },
      options: Object.assign({}, common, {
        scales: { y: { beginAtZero: true, max: 100, title: { display: true, text: "%" } } },
        plugins: { tooltip: { callbacks: { afterLabel: function (ctx) {
          var f = data.failover[ctx.dataIndex]; return f.failedOver + " of " + f.tried + " attempts";
        } } } }
      })
    });
    var f = data.funnel;
    var stages = [["accepted", f.accepted, "#5b6472"], ["first step", f.firstStep, "#2f6fde"],
      ["failed over", f.failedOver, "#e07a5f"], ["delivered", f.DELIVERED, COLORS.DELIVERED],
      ["undeliverable", f.UNDELIVERABLE, COLORS.UNDELIVERABLE], ["expired", f.EXPIRED, COLORS.EXPIRED],
      ["rejected", f.REJECTED, COLORS.REJECTED], ["pending", f.PENDING, COLORS.PENDING]];
    new Chart(document.getElementById("funnel"), {
      type: "bar",
      data: { labels: stages.map(function (s) { return s[0]; }),
        datasets: [{ label: "messages", data: stages.map(function (s) { return s[1]; }),
          backgroundColor: stages.map(function (s) { return s[2]; }) }] },
      options: Object.assign({}, common, { indexAxis: "y", plugins: { legend: { display: false } },
        scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } })
    });
    document.getElementById("total").textContent = "Messages counted: " + data.total + ".";
    document.body.setAttribute("data-charts", "ready");
  }

  fetch("/console/api/overview", { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
    .then(draw)
    .catch(function (e) {
      document.getElementById("total").textContent = "Could not load the numbers: " + e.message;
      document.body.setAttribute("data-charts", "error");
    });
})();
