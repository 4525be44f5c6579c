/* The report's only script, loaded from the site itself (the pages allow no inline script or
   style: see usage-report serve's Content-Security-Policy). It works from the file system too. */
(function () {
  "use strict";

  /* Any range: sum the view's daily rows (range/<view>.js, loaded after this script) between two days.
     Money arrives as whole 1e-10 USD in strings and is summed as BigInt, so totals are exact and rounded once,
     half to even, as the exports round them. Text is set as text, never as markup; the CSV neutralises formulas as
     the exports do (exports.spreadsheet_safe). */
  function money(units, places) {
    var scale = BigInt("1" + "0".repeat(10 - places)), whole = units / scale, rest = units % scale, half = scale / 2n;
    if (rest < 0n) { rest = -rest; }
    if (rest > half || (rest === half && whole % 2n !== 0n)) { whole += units < 0n ? -1n : 1n; }
    var sign = whole < 0n ? "-" : "", digits = (whole < 0n ? -whole : whole).toString().padStart(places + 1, "0");
    return sign + digits.slice(0, -places) + "." + digits.slice(-places);
  }
  function exact(measure) { return measure.kind === "money" || measure.kind === "amount"; }
  function grouped(text) {
    var parts = text.split(".");
    parts[0] = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return parts.join(".");
  }
  function cell(row, text, header) {
    var td = document.createElement(header ? "th" : "td");
    td.textContent = text;
    if (!header) { td.className = "num"; }
    row.appendChild(td);
  }
  function percentile(buckets, total, q, ratio) {
    var rank = Math.ceil(q / 100 * total), seen = 0, keys = Object.keys(buckets).map(Number).sort(function (a, b) { return a - b; });
    for (var i = 0; i < keys.length; i++) {
      seen += buckets[keys[i]];
      if (seen >= rank) { return Math.round(Math.pow(ratio, keys[i] + 0.5)); }
    }
    return 0;
  }
  function sumRange(data, from, to) {
    var groups = {}, order = [];
    data.rows.forEach(function (row) {
      var day = data.days[row[0]];
      if (day < from || day > to) { return; }
      var id = row[1], group = groups[id];
      if (!group) {
        group = groups[id] = {label: row[2], values: data.measures.map(function (m) { return exact(m) ? 0n : 0; }), buckets: {}, ms: 0};
        order.push(id);
      }
      if (data.measures[0].kind === "percentile") {
        group.buckets[row[3]] = (group.buckets[row[3]] || 0) + row[4];
        group.values[0] += row[4];
        group.ms += row[5];
        return;
      }
      data.measures.forEach(function (m, i) { group.values[i] += exact(m) ? BigInt(row[3 + i]) : row[3 + i]; });
    });
    return order.map(function (id) { var g = groups[id]; g.id = id; return g; });
  }
  function showRange(form) {
    var data = window.usageRange, section = form.closest(".range");
    var status = section.querySelector(".range-status"), table = section.querySelector(".range-result"), link = section.querySelector(".range-csv");
    var from = form.elements.from.value, to = form.elements.to.value;
    if (!data) { status.textContent = "The daily rows of this view (range/" + form.dataset.view + ".js) are missing."; return; }
    if (!from || !to || from > to) { status.textContent = "Pick a first day on or before the last day."; return; }
    var latency = data.measures[0].kind === "percentile";
    var groups = sumRange(data, from, to);
    var inRange = data.days.filter(function (d) { return d >= from && d <= to; }).length;
    var columns = latency ? ["Requests", "Mean (ms)", "p50 (ms)", "p95 (ms)", "p99 (ms)"] : data.measures.map(function (m) { return m.label; });
    var csv = [[data.noun].concat(columns)];
    var moneyAt = data.measures.map(exact), prefix = data.measures.map(function (m) { return m.kind === "money" ? "$" : ""; });
    groups.forEach(function (g) {
      g.cells = latency ? [g.values[0], Math.round(g.ms / g.values[0])].concat([50, 95, 99].map(function (q) { return percentile(g.buckets, g.values[0], q, data.bucket_ratio); }))
        : g.values;
    });
    var spendAt = moneyAt.lastIndexOf(true), sortAt = spendAt >= 0 ? spendAt : 0;
    groups.sort(function (a, b) {
      var x = a.cells[sortAt], y = b.cells[sortAt];
      return x < y ? 1 : x > y ? -1 : (a.label < b.label ? -1 : 1);
    });
    if (data.view === "index") { groups.sort(function (a, b) { return a.id < b.id ? -1 : 1; }); }
    var head = table.tHead, body = table.tBodies[0], foot = table.tFoot;
    head.textContent = ""; body.textContent = ""; foot.textContent = "";
    var hr = head.insertRow();
    [data.noun].concat(columns).forEach(function (c) { var th = document.createElement("th"); th.scope = "col"; th.textContent = c; hr.appendChild(th); });
    var totals = columns.map(function (_, i) { return !latency && moneyAt[i] ? 0n : 0; });
    groups.forEach(function (g) {
      var tr = body.insertRow();
      cell(tr, g.label, true);
      g.cells.forEach(function (v, i) {
        cell(tr, !latency && moneyAt[i] ? prefix[i] + grouped(money(v, 4)) : grouped(String(v)));
        if (!latency) { totals[i] += v; }
      });
      csv.push([g.label].concat(g.cells.map(function (v, i) { return !latency && moneyAt[i] ? money(v, 6) : String(v); })));
    });
    if (!latency) {
      var tf = foot.insertRow();
      cell(tf, data.view === "tags" ? "Rows added up (a request under several tags counts under each)" : "Total", true);
      totals.forEach(function (v, i) { cell(tf, moneyAt[i] ? prefix[i] + grouped(money(v, 4)) : grouped(String(v))); });
    }
    table.hidden = false;
    status.textContent = from + " to " + to + ": " + inRange + " day(s) with data, " + groups.length + " row(s)." + (data.note ? " " + data.note : "");
    var text = csv.map(function (r) { return r.map(function (v) { v = String(v); v = v.replace(/(?<=[,;\t\r\n])(?=[\s"]*[=+\-@])/g, "'"); if (/^(?:[\s"]*[=+\-@]|[\t\r\n])/.test(v)) { v = "'" + v; } return /[",\n;]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }).join(","); }).join("\r\n") + "\r\n";
    link.href = URL.createObjectURL(new Blob([text], {type: "text/csv"}));
    link.download = data.view + "_" + from + "_" + to + ".csv";
    link.hidden = false;
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".range-form").forEach(function (form) {
      form.addEventListener("submit", function (event) { event.preventDefault(); showRange(form); });
    });
  });

  /* Teams page: filter the table by team name, in the page, without a server round trip. */
  var filter = document.getElementById("team-filter");
  if (filter) {
    filter.addEventListener("input", function () {
      var needle = filter.value.trim().toLowerCase();
      document.querySelectorAll("#teams tbody tr[data-name]").forEach(function (row) {
        row.hidden = needle !== "" && row.dataset.name.toLowerCase().indexOf(needle) === -1;
      });
    });
  }
})();
