// The overview: fetches /console/api/overview for the chosen range every few seconds and redraws in place
// (figures, tables, and the charts with the vendored Chart.js, chart.umd.min.js). No reload.
"use strict";
(function () {
  var REFRESH_MS = 5000;
  var COLORS = { DELIVERED: "#1f8a4c", UNDELIVERABLE: "#c2412d", REJECTED: "#e07a5f", EXPIRED: "#b7791f",
    PENDING: "#2f6fde" };
  var OUTCOMES = ["DELIVERED", "UNDELIVERABLE", "EXPIRED", "REJECTED"];
  var charts = {};
  var params = new URLSearchParams(window.location.search);
  var refreshes = 0;
  var timer = null;

  function $(id) { return document.getElementById(id); }
  function two(n) { return ("0" + n).slice(-2); }
  function clock(ts, withDay) {
    var d = new Date(ts * 1000);
    var t = two(d.getUTCHours()) + ":" + two(d.getUTCMinutes());
    return withDay ? d.getUTCFullYear() + "-" + two(d.getUTCMonth() + 1) + "-" + two(d.getUTCDate()) + " " + t : t;
  }
  function duration(s) {
    if (s === null || s === undefined) { return "–"; }
    if (s < 1) { return Math.round(s * 1000) + " ms"; }
    if (s < 60) { return (Math.round(s * 10) / 10) + " s"; }
    if (s < 3600) { return (Math.round(s / 6) / 10) + " min"; }
    return (Math.round(s / 360) / 10) + " h";
  }
  function percent(x) { return x === null || x === undefined ? "–" : (Math.round(x * 1000) / 10) + " %"; }
  function money(x, currency) { return x.toFixed(x >= 100 ? 2 : 4) + (currency ? " " + currency : ""); }
  function cell(row, content, isHtmlNode) {
    var td = document.createElement("td");
    if (isHtmlNode) { td.appendChild(content); } else { td.textContent = content; }
    row.appendChild(td);
  }
  function fill(id, rows, empty) {
    var body = $(id).querySelector("tbody");
    body.textContent = "";
    if (!rows.length) {
      var tr = document.createElement("tr");
      var td = document.createElement("td");
      td.colSpan = $(id).querySelectorAll("th").length;
      td.className = "muted";
      td.textContent = empty;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    rows.forEach(function (cells) {
      var tr = document.createElement("tr");
      cells.forEach(function (c) { cell(tr, c, typeof c === "object"); });
      body.appendChild(tr);
    });
  }

  function chart(id, config) {
    if (charts[id]) {
      charts[id].data = config.data;
      charts[id].update("none");
    } else {
      charts[id] = new Chart($(id), config);
    }
  }

  function draw(data) {
    var common = { responsive: true, maintainAspectRatio: false, animation: false };
    var byDay = data.range.span >= 3600;
    var f = data.funnel;
    var pending = data.buckets.map(function (_b, i) {
      var done = OUTCOMES.reduce(function (sum, o) { return sum + data.perMinute[o][i]; }, 0);
      return Math.max(0, data.perMinute.accepted[i] - done);
    });
    chart("perMinute", {
      type: "bar",
      data: {
        labels: data.buckets.map(function (b) { return clock(b, byDay && data.buckets.length > 24); }),
        datasets: OUTCOMES.map(function (o) {
          return { label: o.toLowerCase(), data: data.perMinute[o], backgroundColor: COLORS[o], stack: "all" };
        }).concat([{ label: "pending", data: pending, backgroundColor: COLORS.PENDING, stack: "all" }])
      },
      options: Object.assign({}, common, {
        scales: { x: { stacked: true, title: { display: true, text: (byDay ? "hour" : "minute") + " accepted (UTC)" } },
                  y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } }
      })
    });
    chart("failover", {
      type: "bar",
      data: {
        labels: data.failover.map(function (x) { return "step " + x.step + " " + x.channel; }),
        datasets: [{ label: "failed over (%)", backgroundColor: "#e07a5f",
          data: data.failover.map(function (x) { return Math.round(x.rate * 1000) / 10; }) }]
      },
      options: Object.assign({}, common, { scales: { y: { beginAtZero: true, max: 100, title: { display: true, text: "%" } } } })
    });
    var stages = [["accepted", f.accepted, "#5b6472"], ["delivered", f.DELIVERED, COLORS.DELIVERED],
      ["undeliverable", f.UNDELIVERABLE, COLORS.UNDELIVERABLE], ["expired", f.EXPIRED, COLORS.EXPIRED],
      ["rejected", f.REJECTED, COLORS.REJECTED], ["pending", f.PENDING, COLORS.PENDING]];
    chart("funnel", {
      type: "bar",
      data: { labels: stages.map(function (s) { return s[0]; }),
        datasets: [{ label: "messages", data: stages.map(function (s) { return s[1]; }),
          backgroundColor: stages.map(function (s) { return s[2]; }) }] },
      options: Object.assign({}, common, { indexAxis: "y", plugins: { legend: { display: false } },
        scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } })
    });

    $("kpi-accepted").textContent = f.accepted.toLocaleString("en");
    $("kpi-delivered").textContent = percent(data.deliveredRate);
    $("kpi-pending").textContent = f.PENDING.toLocaleString("en");
    $("kpi-median").textContent = duration(data.latency.all.median);
    $("kpi-p95").textContent = duration(data.latency.all.p95);
    $("kpi-cost").textContent = money(data.cost.total, data.cost.currency);
    $("range-label").textContent = "Messages accepted " + clock(data.range.from, true) + " – " +
      clock(data.range.to, true) + " UTC (" + data.range.label + ").";
    $("total").textContent = "Messages counted: " + data.total + "." +
      (data.backlog ? " Still adding " + data.backlog + " older messages." : "");
    $("updated").textContent = "Updated " + new Date(data.generatedAt * 1000).toISOString().slice(11, 19) + " UTC.";

    fill("failover-table", data.failover.map(function (x) {
      return [String(x.step), x.channel, String(x.tried), String(x.failedOver), percent(x.rate)];
    }), "No finished messages in this range.");
    fill("errors", data.errors.map(function (e) {
      var a = document.createElement("a");
      a.href = e.link;
      a.className = "mono";
      a.textContent = e.error;
      return [a, String(e.count), percent(e.share)];
    }), "No errors in this range.");
    fill("channel-latency", data.channelLatency.map(function (c) {
      return [c.channel, String(c.count), duration(c.median), duration(c.p95)];
    }), "Nothing delivered in this range.");
    fill("cost", data.cost.channels.map(function (c) {
      return [c.channel, String(c.messages), money(c.cost, data.cost.currency)];
    }), "No finished messages in this range.");
    fill("connectors", data.connectors.map(function (c) {
      var state = document.createElement("span");
      var up = c.bound === undefined ? !c.stale : c.bound && !c.stale;
      state.className = "badge " + (up ? "delivered" : "rejected");
      state.textContent = c.stale ? "stale" : (c.bound === undefined ? "running" : (c.bound ? "bound" : "not bound"));
      var details = [c.channel + " · " + c.kind, "seen " + c.ageSeconds + " s ago"];
      if (c.windowSize !== undefined) { details.push("window " + c.windowInUse + "/" + c.windowSize); }
      if (c.throttles !== undefined) { details.push(c.throttles + " throttled"); }
      if (c.queued) { details.push(c.queued + " queued"); }
      details.push(c.submitted + " submitted");
      var errors = c.refused + " refused, " + c.retried + " retried; " + c.errorsRecent + " in the last " +
        Math.round(c.recentSeconds / 60) + " min" + (c.lastError ? " · last: " + c.lastError : "");
      return [c.name + " (" + c.process + ")", state, details.join(" · "), errors];
    }), "No connector reports: the sandbox serves every channel, or no engine process is running.");

    refreshes += 1;
    document.body.setAttribute("data-range", data.range.key);
    document.body.setAttribute("data-refreshes", String(refreshes));
    document.body.setAttribute("data-charts", "ready");
  }

  function load() {
    var query = params.toString();
    return fetch("/console/api/overview" + (query ? "?" + query : ""), { credentials: "same-origin" })
      .then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) {
            var errs = body.errors ? Object.keys(body.errors).map(function (k) { return k + " " + body.errors[k]; }) : [];
            throw new Error(errs.join("; ") || "HTTP " + r.status);
          }
          return body;
        });
      })
      .then(draw)
      .catch(function (e) {
        $("total").textContent = "Could not load the numbers: " + e.message;
        document.body.setAttribute("data-charts", "error");
      });
  }

  function schedule() {
    if (timer !== null) { clearTimeout(timer); }
    timer = setTimeout(function () { load().then(schedule); }, REFRESH_MS);
  }

  // the range form: switch without a reload (the address keeps the range, so a reload shows the same)
  var form = $("range");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var button = event.submitter;
    var key = button ? button.value : "custom";
    var next = new URLSearchParams();
    next.set("range", key);
    if (key === "custom") {
      ["from", "to"].forEach(function (n) { var v = form.elements[n].value; if (v) { next.set(n, v); } });
    }
    params = next;
    window.history.replaceState(null, "", window.location.pathname + "?" + next.toString());
    Array.prototype.forEach.call(form.querySelectorAll("button[name=range]"), function (b) {
      var on = b.value === key;
      b.setAttribute("aria-pressed", on ? "true" : "false");
      b.classList.toggle("secondary", !on);
    });
    load().then(schedule);
  });
  load().then(schedule);
})();
