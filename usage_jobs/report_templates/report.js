/* The report's only script, loaded from the site itself (the pages allow no inline script or
   style: see usage-report serve's Content-Security-Policy). It works from the file system too. */
(function () {
  "use strict";

  /* Any range: sum the view's daily rows between two days. range/<view>.js (loaded after this script) names the view's
     months; each month's rows are in range/<view>/<YYYY-MM>.js, loaded here in order once the page is read, each adding
     its days and rows (its day numbers moved past the days before).
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
    if (data.failed.length) {
      status.textContent = "The daily rows of " + data.failed.join(", ") + " (range/" + data.view + "/<month>.js) are missing."; return;
    }
    if (data.loaded < data.months.length) { status.textContent = "The daily rows are still loading: sum again in a moment."; return; }
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
  window.usageRangeMonth = function (month) {
    var data = window.usageRange, offset = data.days.length;
    Array.prototype.push.apply(data.days, month.days);
    month.rows.forEach(function (row) { row[0] += offset; data.rows.push(row); });
    data.loaded += 1;
  };
  function loadRangeMonths() {
    var data = window.usageRange, head = document.querySelector('script[src*="range/"]');
    if (!data || !head) { return; }
    var base = head.getAttribute("src").replace(/\.js$/, "/");
    data.days = []; data.rows = []; data.loaded = 0; data.failed = [];
    data.months.forEach(function (month) {
      var script = document.createElement("script");
      script.src = base + month + ".js";
      script.async = false;  /* run in the order added: the days stay in order */
      script.onerror = function () { data.failed.push(month); };
      document.head.appendChild(script);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    loadRangeMonths();
    document.querySelectorAll(".range-form").forEach(function (form) {
      form.addEventListener("submit", function (event) { event.preventDefault(); showRange(form); });
    });
  });

  /* A key's page (key.html?k=<page>#d-<day>): one page per month or rolling period draws the key named in the URL from
     window.KEY_DATA (key-data.js, written by key_data.py, which documents its arrays), as key.html.j2 drew one page per key.
     Every name from the logs or the inventory is set as text, isolated in <bdi> (names.name_html); counts and money are
     formatted as the site's Jinja filters format them (count, usd4). */
  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = text; }
    if (className) { node.className = className; }
    return node;
  }
  function add(parent) {
    for (var i = 1; i < arguments.length; i++) {
      var child = arguments[i];
      parent.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return parent;
  }
  function shorten(text, limit) {
    var chars = Array.from(text);  // code points, as Python counts them
    return chars.length <= limit ? text : chars.slice(0, Math.max(limit - 1, 0)).join("").replace(/\s+$/, "") + "\u2026";
  }
  function bdi(text, limit) {
    text = text === null || text === undefined ? "" : String(text);
    var node = el("bdi");
    if (limit && Array.from(text).length > limit) { node.title = text; node.textContent = shorten(text, limit); } else { node.textContent = text; }
    return node;
  }
  function count(n) { return grouped(String(n || 0)); }
  function usd4(text) { return "$" + grouped(text); }
  function spend(value, unpriced) {  /* the m.spend macro */
    var node = document.createDocumentFragment();
    if (value === null) { return add(node, el("span", "unpriced", "flag")); }
    add(node, usd4(value));
    if (unpriced) { add(node, " ", el("span", "+" + count(unpriced) + " unpriced", "flag")); }
    return node;
  }
  function num(row, content, colspan) {
    var td = add(el("td", null, "num"), content);
    if (colspan) { td.colSpan = colspan; }
    return row.appendChild(td);
  }
  function table(headings) {
    var t = el("table"), tr = t.createTHead().insertRow();
    headings.forEach(function (h) { var th = el("th", h); th.scope = "col"; tr.appendChild(th); });
    t.appendChild(el("tbody"));
    return t;
  }
  function kpi(label, value, sub) {
    var box = add(el("div", null, "kpi"), el("p", label, "label"), add(el("p", null, "value"), value));
    if (sub) { box.appendChild(el("p", sub, "sub")); }
    return box;
  }
  function keyMissing(root, data, page) {
    document.title = "Key not found — IG1 usage report";
    var text = !data ? "The keys' data of this period (key-data.js) could not be loaded." :
      !page ? "No key is named in the address (key.html?k=<key>)." : "No key " + page + " was used in " + data.label + ".";
    var back = el("a", "every key of the period");
    back.href = root.dataset.keys;
    add(root, el("h1", "Key not found"), add(el("p", null, "notice"), text + " See ", back, "."));
  }
  function showKey(root) {
    var data = window.KEY_DATA, page = new URLSearchParams(location.search).get("k");
    var key = data && page && Object.prototype.hasOwnProperty.call(data.keys, page) ? data.keys[page] : null;
    if (!key) { keyMissing(root, data, page); return; }
    var alias = key[0], hash = key[1], days = key[15], models = key[16], budget = key[14];
    document.title = "\u2068" + shorten(alias || hash.slice(0, 12), 60) + "\u2069 \u2014 " + data.label + " \u2014 IG1 usage report";
    add(root, add(el("h1"), "Key ", bdi(alias || "(no alias)", 60), " ", el("span", data.label, "period")));
    add(root, add(el("p", null, "note"), "sha256 ", el("code", hash), " \u00b7 team ", bdi(key[2]), " \u00b7 status " + key[3] +
      " \u00b7 first request " + key[4] + " \u00b7 last request " + key[5]));
    var kpis = add(el("section", null, "kpis"), kpi("Spend (USD, estimate)", spend(key[6], key[7])),
      kpi("Tokens", count(key[10]), count(key[8]) + " in \u00b7 " + count(key[9]) + " out"),
      kpi("Requests", count(key[11]), count(key[12]) + " successful \u00b7 " + count(key[13]) + " failed"));
    kpis.setAttribute("aria-label", "Totals");
    root.appendChild(kpis);
    var abnormal = days.filter(function (d) { return d.length > 6; });
    if (abnormal.length) {
      var list = el("ul");
      abnormal.forEach(function (d) { add(list, add(el("li"), el("span", data.days[d[0]], "flag"), " ", bdi(d[6]))); });
      add(root, add(el("section"), el("h2", "Abnormal days"), list));
    }
    if (budget) { root.appendChild(el("p", budget[0] + ": $" + budget[1] + " spent of a $" + budget[2] + " budget in its window.", "notice")); }
    var byDay = {}, top = 0;
    days.forEach(function (d) { byDay[d[0]] = d; if (d[1] !== null && d[1] > top) { top = d[1]; } });
    var history = table(["Date", "Requests", "Failed", "Tokens", "Spend (USD)"]), body = history.tBodies[0];
    data.days.forEach(function (date, i) {
      var d = byDay[i];
      if (!d && !data.all) { return; }
      var tr = body.insertRow(), first = add(el("td"), date);
      tr.id = "d-" + date;
      tr.appendChild(first);
      if (d && d.length > 6) {
        var flag = el("span", "abnormal", "flag");
        flag.title = d[6];
        add(first, " ", flag);
      }
      if (d && d[1] !== null) {
        var bar = el("meter", null, "bar");
        bar.min = 0; bar.max = top || 1; bar.value = d[1];
        bar.setAttribute("aria-hidden", "true");
        num(tr, add(document.createDocumentFragment(), count(d[1]) + " ", bar));
        num(tr, count(d[2]));
        num(tr, count(d[3]));
        num(tr, spend(d[4], d[5]));
      } else {
        num(tr, "no requests", 4);
      }
    });
    add(root, add(el("section"), el("h2", "Daily history" + (data.all ? "" : ", the days with requests")), history));
    var used = table(["Model", "Requests", "Tokens", "Spend (USD)"]);
    models.forEach(function (m) {
      var tr = used.tBodies[0].insertRow();
      tr.appendChild(add(el("td"), bdi(m[0])));
      num(tr, count(m[1]));
      num(tr, count(m[2]));
      num(tr, spend(m[3], m[4]));
    });
    add(root, add(el("section"), el("h2", "Models used"), used));
    if (location.hash.length > 1) {  /* the row is drawn after the browser looked for it: navigate to it again, :target included */
      var target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
      if (target) { location.replace(location.href); target.scrollIntoView(); }
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("key-page");
    if (root) { showKey(root); }
  });

  /* keys.html: both tables drawn from window.KEYS_DATA (keys-data.js, written by table_data.py, which documents its arrays), as
     keys.html.j2 drew them: names as text in <bdi>, counts and money as the count and usd4 filters, the unpriced note as m.spend. */
  function td(row, content, className) { return row.appendChild(add(el("td", null, className), content)); }
  function listed(list, index) { return index === null || index === undefined ? null : list[index]; }
  function keyHref(data, key) {  /* the document's link pattern with the key's page and day put in, each at once */
    if (!key[12]) { return null; }
    var day = listed(data.days, key[15]) || "";
    return data.href.replace(/\{(page|month|day)\}/g, function (_, part) { return part === "page" ? key[12] : part === "month" ? day.slice(0, 7) : day; });
  }
  function keyCell(row, key, link, href) {
    var name = bdi(key[0] || "(no alias)"), code = el("code", key[1]), cellNode = el("td");
    if (link && href) { var a = el("a"); a.href = href; a.appendChild(name); cellNode.appendChild(a); } else { cellNode.appendChild(name); }
    if (link) { code.title = "sha256 of the virtual key"; }
    add(cellNode, " ", code);
    row.appendChild(cellNode);
  }
  function flagged(text) { return el("span", text, "flag"); }
  function showKeys(every, unused) {
    var data = window.KEYS_DATA;
    if (!data) {
      td(every.tBodies[0].insertRow(), "The keys of this period (keys-data.js) could not be loaded.").colSpan = 10;
      return;
    }
    var body = every.tBodies[0], spare = unused.tBodies[0], none = true;
    data.keys.forEach(function (k) {
      var tr = body.insertRow();
      var team = listed(data.teams, k[2]);
      keyCell(tr, k, true, keyHref(data, k));
      td(tr, bdi(team));
      td(tr, k[3] !== "active" ? flagged(k[3]) : "active");
      td(tr, count(k[4]), "num");
      td(tr, count(k[5]), "num");
      td(tr, count(k[6]), "num");
      td(tr, spend(k[7], k[8]), "num");
      var budget = k[9];
      td(tr, budget ? add(document.createDocumentFragment(), budget[0] + "% of $" + budget[1], budget[2] ? add(document.createDocumentFragment(), " ", flagged(budget[2])) : "") : "\u2014", "num");
      td(tr, k[10] ? flagged(String(k[10])) : "0", "num");
      td(tr, k[11]);
      if (!k[4]) {
        none = false;
        var row = spare.insertRow();
        keyCell(row, k, false, null);
        td(row, bdi(team));
        td(row, listed(data.owners, k[13]) || "\u2014");
        td(row, k[3]);
        td(row, k[14] !== null && k[14] !== undefined ? String(k[14]) : "\u2014", "num");
        td(row, k[11]);
      }
    });
    if (none) { td(spare.insertRow(), "Every key was used in this period.").colSpan = 6; }
  }
  document.addEventListener("DOMContentLoaded", function () {
    var every = document.getElementById("keys-every"), unused = document.getElementById("keys-unused");
    if (every && unused) { showKeys(every, unused); }
  });

  /* tag.html?t=<page>, end-user.html?u=<page>: one page per period draws the tag or end user named in the URL from the period's
     tag-data.js or end-user-data.js (table_data.py documents the arrays), as dimension.html.j2 drew a page for each. */
  function itemMissing(root, data, page) {
    var noun = root.dataset.noun;
    document.title = noun + " not found \u2014 IG1 usage report";
    var text = !data ? "The data of this period (" + root.dataset.file + ") could not be loaded." :
      !page ? "No " + noun.toLowerCase() + " is named in the address (?" + root.dataset.param + "=<page>)." :
      "No " + noun.toLowerCase() + " " + page + " had requests in " + data.label + ".";
    var back = el("a", "every " + noun.toLowerCase() + " of the period");
    back.href = root.dataset.list;
    add(root, el("h1", noun + " not found"), add(el("p", null, "notice"), text + " See ", back, "."));
  }
  function showItem(root) {
    var data = window[root.dataset.var], page = new URLSearchParams(location.search).get(root.dataset.param);
    var item = data && page && Object.prototype.hasOwnProperty.call(data.items, page) ? data.items[page] : null;
    if (!item) { itemMissing(root, data, page); return; }
    var noun = root.dataset.noun;
    document.title = "\u2068" + shorten(item[0], 60) + "\u2069 \u2014 " + data.label + " \u2014 IG1 usage report";
    add(root, add(el("h1"), noun + " ", bdi(item[0], 60), " ", el("span", data.label, "period")));
    var kpis = add(el("section", null, "kpis"), kpi("Spend (USD, estimate)", spend(item[7], item[8])),
      kpi("Tokens", count(item[6]), count(item[4]) + " in \u00b7 " + count(item[5]) + " out"),
      kpi("Requests", count(item[1]), count(item[2]) + " successful \u00b7 " + count(item[3]) + " failed" +
        (root.dataset.shared && item[9] ? " \u00b7 " + count(item[9]) + " also under another tag" : "")));
    kpis.setAttribute("aria-label", "Totals");
    root.appendChild(kpis);
    var byDay = {};
    item[10].forEach(function (d) { byDay[d[0]] = d; });
    var days = [];
    data.days.forEach(function (date, i) {
      var d = byDay[i];
      if (d) { days.push([date].concat(d.slice(1))); } else if (data.all) { days.push([date, 0, 0, 0, "0.0000", 0]); }
    });
    [["By day", "Date", days], ["Models", "Model", item[11]], ["Teams", "Team", item[12]]].forEach(function (part) {
      var rows = part[2], top = 0;
      rows.forEach(function (r) { if (r[3] > top) { top = r[3]; } });
      var t = table([part[1], "Requests", "Failed", "Tokens", "Spend (USD)"]);
      rows.forEach(function (r) {
        var tr = t.tBodies[0].insertRow(), bar = el("meter", null, "bar");
        tr.appendChild(add(el("td"), bdi(r[0])));
        num(tr, count(r[1]));
        num(tr, count(r[2]));
        bar.min = 0; bar.max = top || 1; bar.value = r[3] || 0;
        bar.setAttribute("aria-hidden", "true");
        num(tr, add(document.createDocumentFragment(), count(r[3]) + " ", bar));
        num(tr, spend(r[4], r[5]));
      });
      add(root, add(el("section"), el("h2", part[0]), t));
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("dimension-page");
    if (root) { showItem(root); }
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
