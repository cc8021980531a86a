// zhizao built-in dashboard: polls ingest's read API and renders the line at a glance (#/ or
// #/line/<site/area/line>) and one machine (#/machine/<site/area/line/machine>). Plain JS.
// Shown numbers carry data-field / data-value attributes holding the exact API value.
"use strict";
(() => {
  const STATES = ["running", "idle", "setup", "down", "off"];
  const KEY_SIGNALS = ["power_kw", "parts_good", "anomaly_score"];
  const PRODUCTION_KPIS = ["oee", "performance", "quality", "good_count"];  // not applicable to a utility
  const HIDDEN = /^(kpi\.|anomaly\.|fleet\.|state|state_reason|product)$|^(kpi|anomaly|fleet)\./;
  const ANOMALY_THRESHOLD = 0.5; // scores are raw / (raw + threshold): 0.5 is the model's threshold
  const S = {cfg: null, token: null, catalogue: null, catalogueAt: 0, updates: 0, busy: false};

  // The token is given once as ?token=… and kept in localStorage; it is taken out of the address
  // bar at once so it stays out of the history, bookmarks and screenshots of the page.
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    if (params.get("token")) localStorage.setItem("zhizao.token", params.get("token"));
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  }
  S.token = localStorage.getItem("zhizao.token");

  async function api(path, query) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(query || {})) {
      for (const item of [].concat(v)) if (item !== undefined && item !== null) url.searchParams.append(k, item);
    }
    const headers = S.token ? {Authorization: `Bearer ${S.token}`} : {};
    const resp = await fetch(url, {headers});
    if (resp.status === 401 && S.token) {  // revoked or wrong: forget it, say so
      localStorage.removeItem("zhizao.token");
      S.token = null;
      throw new Error("ingest refused the saved token (revoked?): open this page once with ?token=<read token>");
    }
    if (resp.status === 401) throw new Error("ingest needs a token: open this page once with ?token=<read token>");
    if (!resp.ok) {
      const err = new Error(`${url.pathname}: HTTP ${resp.status}`);
      err.status = resp.status;
      throw err;
    }
    return resp.json();
  }
  const iso = ms => new Date(ms).toISOString();
  const h = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v);
      else if (k === "href") e.href = v; else e.setAttribute(k, v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  };
  const pct = v => (v === null || v === undefined) ? "–" : `${(100 * v).toFixed(1)} %`;
  const num = (v, unit) => (v === null || v === undefined) ? "–" : `${ZCharts.fmt(Number(v))}${unit ? " " + unit : ""}`;
  const field = (name, value, text) => h("span", {class: `value f-${name}`, "data-field": name,
                                                   "data-value": value === null || value === undefined ? "" : String(value)}, text);
  // Series zhizao writes itself (KPI feed, anomaly scores ...): never a machine's process signal.
  const derived = signal => (S.cfg.derived_prefixes || []).some(p => signal.startsWith(p));
  // A machine that makes no parts (a compressor: no ideal cycle time in the plant file) has no
  // OEE, Performance, Quality or good parts: the API's 0 / 100 % are the definitions' defaults.
  const notApplicable = (rec, name) => rec.producing === false && PRODUCTION_KPIS.includes(name);
  const NA_TITLE = "Not applicable: this machine makes no parts (no production counter, no ideal cycle time " +
    "in the plant file). It is left out of the line's OEE; its energy counts in the line's kWh per good part.";
  const kpiField = (rec, name, fmt) => notApplicable(rec, name)
    ? h("span", {class: `value f-${name} na`, "data-field": name, "data-value": String(rec[name]),
                 "data-na": "no-production", title: NA_TITLE}, "–")
    : field(name, rec[name], fmt(rec[name]));
  // Top contributors of an anomaly, at most three, without those that round to 0 % (the top one stays).
  const contributors = cs => [...cs].sort((a, b) => b.weight - a.weight).slice(0, 3)
    .filter((c, i) => i === 0 || Math.round(100 * c.weight) >= 1);
  // KPI data quality: the flags that concern the KPIs' inputs (the API's ok is false on them).
  const dqFlags = rec => rec.data_quality && rec.data_quality.ok === false
    ? rec.data_quality.flags.filter(f => f.kpi_input !== false) : [];
  const flagText = f => `${f.kind.replace(/_/g, " ")}${f.signal ? ` of ${f.signal}` : ""}` +
    (f.gap_s !== undefined ? ` (${ZCharts.fmt(f.gap_s)} s in ${f.count} gap${f.count === 1 ? "" : "s"})`
      : f.count !== undefined ? ` (${f.count})` : f.unknown_time_s !== undefined ? ` (${ZCharts.fmt(f.unknown_time_s)} s)` : "");
  const dqMarker = rec => {
    const flags = dqFlags(rec);
    if (!rec.data_quality || !flags.length) return null;
    return h("span", {class: "dq-warn", "data-field": "data_quality", "data-value": "false",
                      title: `KPI data quality: ${flags.map(flagText).join("; ")}`}, "⚠");
  };
  const stateBadge = st => h("span", {class: `state s-${STATES.includes(st) ? st : "unknown"}`,
                                      "data-field": "state", "data-value": st || ""}, st || "unknown");

  async function catalogue() {
    if (!S.catalogue || Date.now() - S.catalogueAt > 60000) {
      S.catalogue = await api("/api/v1/catalogue");
      S.catalogueAt = Date.now();
    }
    const c = S.catalogue;
    const machines = [...new Set(c.signals.filter(s => s.signal === "state").map(s => s.asset))].sort();
    const lines = [...new Set(machines.map(m => m.split("/").slice(0, 3).join("/")))].sort();
    const lastSeen = {};
    for (const s of c.signals) lastSeen[s.asset] = Math.max(lastSeen[s.asset] || 0, Date.parse(s.last_seen));
    return {machines, lines, lastSeen, signals: c.signals};
  }

  // The charts end now, or at the newest sample when the data is older (a replayed shift).
  function span(assets, cat) {
    const newest = Math.max(0, ...assets.map(a => cat.lastSeen[a] || 0));
    const end = newest && newest < Date.now() - 60000 ? newest + 1000 : Date.now();
    return {start: end - S.cfg.span_min * 60000, end, replay: end !== Date.now() && newest > 0};
  }

  // KPIs per shift over the lookback, newest window = the current shift so far; cached for
  // kpi_refresh_s because each call reads the shift's raw data.
  const kpiCache = {};
  async function kpis(scope, end) {
    const hit = kpiCache[scope];
    if (hit && Date.now() - hit.at < S.cfg.kpi_refresh_s * 1000) return hit.value;
    const query = {scope, from: iso(end - S.cfg.kpi_lookback_h * 3600000), to: iso(end), group_by: "shift"};
    let doc;
    try {
      doc = await api(S.cfg.kpi_path, query);
    } catch (err) {
      // No KPI router mounted (ingest without a plant file): everything else still works.
      if (err.status !== 404) throw err;
      return {window: null, machines: {}, lines: {}, query, missing: true};
    }
    const w = doc.windows && doc.windows.length ? doc.windows[doc.windows.length - 1] : null;
    const machines = {}, lines = {};
    if (w) {
      for (const m of w.machines || []) machines[m.machine] = m;
      for (const l of w.lines || []) lines[l.line] = l;
    }
    const value = {window: w, machines, lines, query};
    kpiCache[scope] = {at: Date.now(), value};
    return value;
  }
  const kpiAttrs = k => ({"data-kpi-scope": k.query.scope, "data-kpi-from": k.query.from, "data-kpi-to": k.query.to,
                          "data-kpi-window": k.window ? k.window.window : ""});

  function bucket(t) { return `${Math.max(1, Math.round((t.end - t.start) / 1000 / 120))}s`; }

  function toChart(series, opts) {
    const data = series.map(s => ({name: opts.name ? opts.name(s) : s.signal, ts: s.ts,
                                   values: s.values.map(v => typeof v === "number" ? v : (v === true ? 1 : v === false ? 0 : null))}));
    const box = h("div", {class: "chartbox"});
    box.append(ZCharts.lineChart(data, {...opts}), ZCharts.legend(data));
    return box;
  }

  function alertList(events) {
    if (!events.length) return h("p", {class: "muted", "data-field": "alerts-none"}, "No open alerts.");
    return h("ul", {class: "alerts"}, events.map(e => h("li", {class: `sev-${e.severity}`, "data-event": e.id},
      h("b", {}, e.severity), " ", h("a", {href: `#/machine/${e.asset}`}, e.asset.split("/").pop()), " · ",
      e.rule, " · ", e.message || "", e.value !== null && e.value !== undefined ? ` (${ZCharts.fmt(e.value)})` : "",
      e.contributors && e.contributors.length ? h("small", {class: "contrib"}, " — ", contributors(e.contributors)
        .map(c => `${c.signal} ${(100 * c.weight).toFixed(0)} %`).join(", ")) : null,
      h("small", {class: "muted"}, " since ", new Date(e.start).toLocaleTimeString()))));
  }

  async function overview(lineArg) {
    const cat = await catalogue();
    const line = lineArg || cat.lines[0];
    if (!line) return h("p", {class: "muted"}, "No machine has reported a state yet.");
    const machines = cat.machines.filter(m => m.startsWith(line + "/"));
    const t = span(machines, cat);
    const [latest, k, events, power, scores] = await Promise.all([
      Promise.all(machines.map(m => api("/api/v1/latest", {asset: m}))),
      kpis(line, t.end),
      api("/api/v1/events", {asset: line, state: "open"}),
      api("/api/v1/series", {asset: line, signal: "power_kw", start: iso(t.start), end: iso(t.end), agg: "mean",
                             bucket: bucket(t), epoch: "ms"}),
      api("/api/v1/series", {asset: line, signal: "anomaly_score", start: iso(t.start), end: iso(t.end),
                             agg: "max", bucket: bucket(t), epoch: "ms"}),
    ]);
    const L = k.lines[line] || {};
    const products = Object.keys(L.count_by_product || {});
    const SUM_NOTE = "* Good parts adds up the good parts of every producing machine of the line, unlike parts " +
      `counted alike${products.length ? ` (${products.join(", ")})` : ""}; kWh / good part divides all the line's ` +
      "energy (compressors included) by that sum. Compare a line with itself over time, not with another line.";
    const SUM_TITLE = SUM_NOTE.slice(2);
    const tiles = h("section", {class: "tiles", "data-line": line, ...kpiAttrs(k)},
      tile("OEE", "oee", L.oee, pct(L.oee)), tile("Availability", "availability", L.availability, pct(L.availability)),
      tile("Performance", "performance", L.performance, pct(L.performance)),
      tile("Quality", "quality", L.quality, pct(L.quality)),
      tile("Good parts *", "good_count", L.good_count, num(L.good_count), SUM_TITLE),
      tile("kWh / good part *", "kwh_per_good_part", L.kwh_per_good_part, num(L.kwh_per_good_part, "kWh"), SUM_TITLE),
      tile("Energy", "energy_kwh", L.energy_kwh, num(L.energy_kwh, "kWh")),
      tile("Scrap rate", "scrap_ratio", L.scrap_ratio, pct(L.scrap_ratio)));
    const rows = machines.map((m, i) => {
      const vals = Object.fromEntries(latest[i].values.map(v => [v.signal, v]));
      const rec = k.machines[m] || {};
      const procs = latest[i].values.filter(v => typeof v.value === "number" && !HIDDEN.test(v.signal)
                                            && !derived(v.signal) && !KEY_SIGNALS.includes(v.signal) && !v.signal.startsWith("parts_")
                                            && v.signal !== "energy_kwh").slice(0, 3);
      const score = vals.anomaly_score ? vals.anomaly_score.value : null;
      return h("tr", {"data-machine": m, class: score !== null && score >= ANOMALY_THRESHOLD ? "anomalous" : ""},
        h("td", {}, h("a", {href: `#/machine/${m}`}, m.split("/").pop()), dqMarker(rec)),
        h("td", {}, stateBadge(vals.state ? vals.state.value : null)),
        h("td", {}, kpiField(rec, "oee", pct)),
        h("td", {}, field("power_kw", vals.power_kw && vals.power_kw.value, num(vals.power_kw && vals.power_kw.value, "kW"))),
        h("td", {}, kpiField(rec, "good_count", num)),
        h("td", {}, field("kwh_per_good_part", rec.kwh_per_good_part, num(rec.kwh_per_good_part, "kWh"))),
        h("td", {}, field("anomaly_score", score, score === null ? "–" : ZCharts.fmt(score))),
        h("td", {class: "signals"}, procs.map(v => h("span", {class: "sig", "data-signal": v.signal},
          `${v.signal} ${num(v.value, v.unit)}`))));
    });
    const table = h("table", {class: "machines"},
      h("thead", {}, h("tr", {}, ["Machine", "State", "OEE", "Power", "Good parts", "kWh / part", "Anomaly",
                                  "Key signals"].map(x => h("th", {}, x)))),
      h("tbody", {}, rows));
    const chartOpts = {start: t.start, end: t.end, name: s => s.asset.split("/").pop()};
    return h("div", {class: "overview", ...kpiAttrs(k)},
      h("h1", {}, line, t.replay ? h("small", {class: "muted"}, ` · data up to ${new Date(t.end).toLocaleString()}`) : null),
      k.missing ? h("p", {class: "muted", "data-field": "kpi-missing"},
        `No KPIs: ${S.cfg.kpi_path} is not mounted (give ingest a KPI config with the plant file).`) : null,
      tiles, h("p", {class: "note muted", "data-note": "line-sums"}, SUM_NOTE), table,
      h("div", {class: "cols"},
        h("section", {}, h("h2", {}, `Power, last ${S.cfg.span_min} min (kW)`), toChart(power.series, {...chartOpts, min: 0})),
        h("section", {}, h("h2", {}, "Anomaly score"),
          toChart(scores.series, {...chartOpts, min: 0, max: 1, threshold: ANOMALY_THRESHOLD}))),
      h("section", {}, h("h2", {}, `Open alerts (${events.events.length})`), alertList(events.events)));
  }

  function tile(label, name, value, text, title) {
    return h("div", {class: "tile", ...(title ? {title} : {})}, h("div", {class: "label"}, label), field(name, value, text));
  }
  function kpiTile(label, rec, name, fmt) {
    return h("div", {class: "tile"}, h("div", {class: "label"}, label), kpiField(rec, name, fmt));
  }

  async function machinePage(asset) {
    const cat = await catalogue();
    const t = span([asset], cat);
    const line = asset.split("/").slice(0, 3).join("/");
    const ta = {start: t.end - Math.max(60, S.cfg.span_min) * 60000, end: t.end};  // scores: a longer view
    const [latest, k, events, series, scores] = await Promise.all([
      api("/api/v1/latest", {asset}), kpis(line, t.end),
      api("/api/v1/events", {asset, limit: 20}),
      api("/api/v1/series", {asset, start: iso(t.start), end: iso(t.end), agg: "mean", bucket: bucket(t), epoch: "ms"}),
      api("/api/v1/series", {asset, signal: "anomaly_score", start: iso(ta.start), end: iso(ta.end), agg: "max",
                             bucket: bucket(ta), epoch: "ms"}),
    ]);
    const vals = Object.fromEntries(latest.values.map(v => [v.signal, v]));
    const rec = k.machines[asset] || {};
    const score = vals.anomaly_score ? vals.anomaly_score.value : null;
    const open = events.events.filter(e => e.state === "open" && e.source === "anomaly");
    const anomalous = (score !== null && score >= ANOMALY_THRESHOLD) || open.length > 0;
    const banner = anomalous
      ? h("div", {class: "banner anomaly", "data-field": "anomaly", "data-value": "true"}, "Anomaly: ",
          open.length ? `${open[0].rule} since ${new Date(open[0].start).toLocaleTimeString()}` : `score ${ZCharts.fmt(score)}`,
          open.length && open[0].contributors.length
            ? h("span", {class: "contrib"}, " — driven by ", contributors(open[0].contributors)
                .map(c => `${c.signal} (${(100 * c.weight).toFixed(0)} %)`).join(", ")) : null)
      : h("div", {class: "banner ok", "data-field": "anomaly", "data-value": "false"}, "No anomaly");
    const numeric = series.series.filter(s => !HIDDEN.test(s.signal) && s.signal !== "anomaly_score"
                                         && s.values.some(v => typeof v === "number"));
    const anomalySeries = scores.series;
    const latestList = h("table", {class: "latest"}, h("tbody", {}, latest.values
      .filter(v => !/^(kpi|anomaly\.contrib|fleet)\./.test(v.signal))
      .map(v => h("tr", {"data-signal": v.signal}, h("td", {}, v.signal),
        h("td", {}, field(v.signal, v.value, typeof v.value === "number" ? num(v.value, v.unit) : String(v.value))),
        h("td", {class: "muted"}, new Date(v.ts).toLocaleTimeString())))));
    return h("div", {class: "machine", "data-machine": asset},
      h("h1", {}, h("a", {href: `#/line/${line}`}, line), " / ", asset.split("/").pop(), " ",
        stateBadge(vals.state ? vals.state.value : null), " ", dqMarker(rec)),
      banner,
      h("section", {class: "tiles", ...kpiAttrs(k)},
        kpiTile("OEE", rec, "oee", pct), tile("Availability", "availability", rec.availability, pct(rec.availability)),
        kpiTile("Performance", rec, "performance", pct), kpiTile("Quality", rec, "quality", pct),
        tile("kWh / good part", "kwh_per_good_part", rec.kwh_per_good_part, num(rec.kwh_per_good_part, "kWh")),
        tile("Anomaly score", "anomaly_score", score, score === null ? "–" : ZCharts.fmt(score))),
      h("div", {class: "cols"},
        h("section", {"data-chart-anomaly": ""},
          h("h2", {}, `Anomaly score, last ${Math.round((ta.end - ta.start) / 60000)} min (red line: model threshold)`),
          toChart(anomalySeries, {start: ta.start, end: ta.end, min: 0, max: 1, threshold: ANOMALY_THRESHOLD})),
        h("section", {}, h("h2", {}, "Events"), alertList(events.events))),
      h("section", {}, h("h2", {}, `Signals, last ${S.cfg.span_min} min`),
        h("div", {class: "grid"}, numeric.map(s => h("div", {class: "cell", "data-chart": s.signal},
          h("h3", {}, s.signal, s.unit ? h("small", {class: "muted"}, ` ${s.unit}`) : null),
          toChart([s], {start: t.start, end: t.end, height: 110})))),
        h("h2", {}, "Latest values"), latestList));
  }

  async function render() {
    if (S.busy) return;
    S.busy = true;
    const status = document.getElementById("status");
    try {
      const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
      let view;
      if (hash.startsWith("machine/")) view = await machinePage(hash.slice(8));
      else view = await overview(hash.startsWith("line/") ? hash.slice(5) : null);
      const cat = await catalogue();
      const nav = document.getElementById("lines");
      nav.replaceChildren(...cat.lines.map(l => h("a", {href: `#/line/${l}`}, l)));
      document.getElementById("view").replaceChildren(view);
      S.updates += 1;
      document.body.dataset.updates = String(S.updates);
      status.textContent = `live · ${new Date().toLocaleTimeString()}`;
      status.className = "status ok";
    } catch (err) {
      status.textContent = String(err.message || err);
      status.className = "status error";
    } finally {
      S.busy = false;
    }
  }

  async function start() {
    S.cfg = await (await fetch("/ui/config.json")).json();
    document.title = S.cfg.title;
    document.getElementById("refresh").textContent = S.cfg.refresh_s;
    window.addEventListener("hashchange", render);
    await render();
    setInterval(render, S.cfg.refresh_s * 1000);
  }
  start();
})();
