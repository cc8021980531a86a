// zhizao built-in dashboard: polls ingest's read API and renders the line at a glance (#/ or
// #/line/<site/area/line>), one machine (#/machine/<site/area/line/machine>) and progress against
// the programme's targets (#/programme/<site, area or line>?baseline_from=&baseline_to=&from=&to=).
// Plain JS. Shown numbers carry data-field / data-value attributes holding the exact API value.
// Times are shown in the browser's time zone with their UTC offset (the API does not say the
// plant's zone).
"use strict";
(() => {
  const STATES = ["running", "idle", "setup", "down", "off"];
  const KEY_SIGNALS = ["power_kw", "parts_good", "anomaly_score"];
  const PRODUCTION_KPIS = ["oee", "performance", "quality", "good_count"];  // not applicable to a utility
  const HIDDEN = /^(kpi\.|anomaly\.|fleet\.|state|state_reason|product)$|^(kpi|anomaly|fleet)\./;
  const ANOMALY_THRESHOLD = 0.5; // scores are raw / (raw + threshold): 0.5 is the model's threshold
  // Every anomaly model's score: anomaly_score (the health model) and anomaly_score.<model>.
  const SCORE = /^anomaly_score(\.|$)/;
  const modelOf = signal => signal === "anomaly_score" ? "health" : signal.slice("anomaly_score.".length);
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
    if (!resp.ok) {  // the API's own message (its JSON "detail") goes with the error
      let detail = null;
      try { detail = (await resp.json()).detail; } catch (_) { /* not JSON */ }
      const text = typeof detail === "string" ? detail : Array.isArray(detail)
        ? detail.map(d => `${[].concat(d.loc || []).slice(-1)[0] || ""}: ${d.msg}`).join("; ") : "";
      const err = new Error(`${url.pathname}: HTTP ${resp.status}${text ? ` — ${text}` : ""}`);
      err.status = resp.status;
      err.detail = detail;
      err.text = text;
      throw err;
    }
    return resp.json();
  }
  const iso = ms => new Date(ms).toISOString();
  const clock = (ms, opts) => ZCharts.clock(typeof ms === "string" ? Date.parse(ms) : ms, opts);
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
      if (err.status !== 404) throw err;
      // No KPI router mounted (ingest without a plant file): FastAPI's own 404 for a path it does
      // not know. Everything else still works.
      if (err.detail === "Not Found") return {window: null, machines: {}, lines: {}, query, missing: true};
      // The router answered: no machine under this scope (its message lists the known ones).
      return {window: null, machines: {}, lines: {}, query, error: err.text || err.message};
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
  // What the KPI tiles cover: the shift (its name and local day, from the window id
  // "<day>/<shift>") and the window's start and end — clipped to the page's query: "so far" when it
  // ends at the page's now, "from" when the look-back cut its start.
  function kpiPeriod(k) {
    const w = k.window;
    if (!w) {
      return h("div", {class: "period muted", "data-field": "kpi-period", "data-value": ""},
        k.missing || k.error ? "No KPI period" : `No shift in the last ${S.cfg.kpi_lookback_h} h`);
    }
    const [day, ...rest] = w.window.split("/");
    const shift = rest.join("/");
    const clipped = Date.parse(w.start) <= Date.parse(k.query.from);
    const open = Date.parse(w.end) >= Date.parse(k.query.to);
    return h("div", {class: "period", "data-field": "kpi-period", "data-value": w.window,
                     "data-start": w.start, "data-end": w.end,
                     title: "KPIs of this window: the current shift so far (shift days are the plant's local days)"},
      shift ? `Shift ${shift} of ${day}` : w.window, ": ", clipped ? "from " : "",
      clock(w.start, {date: new Date(w.start).toDateString() !== new Date(w.end).toDateString()}),
      " – ", clock(w.end), open ? " (so far)" : "");
  }
  const kpiProblem = (k, scope) => k.missing
    ? h("p", {class: "muted", "data-field": "kpi-missing"},
        `No KPIs: ${S.cfg.kpi_path} is not mounted (give ingest a KPI config with the plant file).`)
    : k.error ? h("p", {class: "error", "data-field": "kpi-error", "data-value": k.error},
        `No KPIs for ${scope}: ${k.error}`) : null;

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
      h("small", {class: "muted"}, " since ", clock(e.start, {seconds: true})))));
  }

  async function overview(lineArg) {
    const cat = await catalogue();
    const line = lineArg || cat.lines[0];
    if (!line) return h("p", {class: "muted"}, "No machine has reported a state yet.");
    const machines = cat.machines.filter(m => m.startsWith(line + "/"));
    const t = span(machines, cat);
    const scoreSignals = [...new Set(cat.signals.filter(s => s.asset.startsWith(line + "/") && SCORE.test(s.signal))
      .map(s => s.signal))].sort();
    const [latest, k, events, power, scores] = await Promise.all([
      Promise.all(machines.map(m => api("/api/v1/latest", {asset: m}))),
      kpis(line, t.end),
      api("/api/v1/events", {asset: line, state: "open"}),
      api("/api/v1/series", {asset: line, signal: "power_kw", start: iso(t.start), end: iso(t.end), agg: "mean",
                             bucket: bucket(t), epoch: "ms"}),
      api("/api/v1/series", {asset: line, signal: scoreSignals.length ? scoreSignals : "anomaly_score",
                             start: iso(t.start), end: iso(t.end), agg: "max", bucket: bucket(t), epoch: "ms"}),
    ]);
    const L = k.lines[line] || {};
    const products = Object.keys(L.count_by_product || {});
    const SUM_NOTE = "* Good parts adds up the good parts of every producing machine of the line, unlike parts " +
      `counted alike${products.length ? ` (${products.join(", ")})` : ""}; kWh / good part divides all the line's ` +
      "energy (compressors included) by that sum. Compare a line with itself over time, not with another line.";
    const SUM_TITLE = SUM_NOTE.slice(2);
    const tiles = h("section", {class: "tiles", "data-line": line, ...kpiAttrs(k)}, kpiPeriod(k),
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
      const others = Object.values(vals).filter(v => SCORE.test(v.signal) && v.signal !== "anomaly_score"
                                                    && typeof v.value === "number");
      const high = [score, ...others.map(v => v.value)].some(v => v !== null && v >= ANOMALY_THRESHOLD);
      return h("tr", {"data-machine": m, class: high ? "anomalous" : ""},
        h("td", {}, h("a", {href: `#/machine/${m}`}, m.split("/").pop()), dqMarker(rec)),
        h("td", {}, stateBadge(vals.state ? vals.state.value : null)),
        h("td", {}, kpiField(rec, "oee", pct)),
        h("td", {}, field("power_kw", vals.power_kw && vals.power_kw.value, num(vals.power_kw && vals.power_kw.value, "kW"))),
        h("td", {}, kpiField(rec, "good_count", num)),
        h("td", {}, field("kwh_per_good_part", rec.kwh_per_good_part, num(rec.kwh_per_good_part, "kWh"))),
        h("td", {}, field("anomaly_score", score, score === null ? "–" : ZCharts.fmt(score)),
          others.map(v => h("small", {class: "model-score"}, ` ${modelOf(v.signal)} `,
            field(v.signal, v.value, ZCharts.fmt(v.value))))),
        h("td", {class: "signals"}, procs.map(v => h("span", {class: "sig", "data-signal": v.signal},
          `${v.signal} ${num(v.value, v.unit)}`))));
    });
    const table = h("table", {class: "machines"},
      h("thead", {}, h("tr", {}, ["Machine", "State", "OEE", "Power", "Good parts", "kWh / part", "Anomaly",
                                  "Key signals"].map(x => h("th", {}, x)))),
      h("tbody", {}, rows));
    const chartOpts = {start: t.start, end: t.end, name: s => s.asset.split("/").pop()};
    const scoreName = s => `${s.asset.split("/").pop()}${s.signal === "anomaly_score" ? "" : ` · ${modelOf(s.signal)}`}`;
    return h("div", {class: "overview", ...kpiAttrs(k)},
      h("h1", {}, line, t.replay ? h("small", {class: "muted"}, ` · data up to ${clock(t.end, {date: true})}`) : null),
      kpiProblem(k, line),
      tiles, h("p", {class: "note muted", "data-note": "line-sums"}, SUM_NOTE), table,
      h("div", {class: "cols"},
        h("section", {}, h("h2", {}, `Power, last ${S.cfg.span_min} min (kW)`), toChart(power.series, {...chartOpts, min: 0})),
        h("section", {"data-chart-anomaly": ""}, h("h2", {}, "Anomaly scores, every model (red line: threshold)"),
          toChart(scores.series, {...chartOpts, name: scoreName, min: 0, max: 1, threshold: ANOMALY_THRESHOLD}))),
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
    const scoreSignals = [...new Set(cat.signals.filter(s => s.asset === asset && SCORE.test(s.signal))
      .map(s => s.signal))].sort();
    const [latest, k, events, series, scores] = await Promise.all([
      api("/api/v1/latest", {asset}), kpis(line, t.end),
      api("/api/v1/events", {asset, limit: 20}),
      api("/api/v1/series", {asset, start: iso(t.start), end: iso(t.end), agg: "mean", bucket: bucket(t), epoch: "ms"}),
      api("/api/v1/series", {asset, signal: scoreSignals.length ? scoreSignals : "anomaly_score",
                             start: iso(ta.start), end: iso(ta.end), agg: "max", bucket: bucket(ta), epoch: "ms"}),
    ]);
    const vals = Object.fromEntries(latest.values.map(v => [v.signal, v]));
    const rec = k.machines[asset] || {};
    const score = vals.anomaly_score ? vals.anomaly_score.value : null;
    // Every model's latest score (health first), each on the anomaly chart and in a tile.
    const models = latest.values.filter(v => SCORE.test(v.signal) && typeof v.value === "number")
      .sort((a, b) => (a.signal === "anomaly_score" ? -1 : b.signal === "anomaly_score" ? 1 : a.signal.localeCompare(b.signal)));
    const high = models.filter(v => v.value >= ANOMALY_THRESHOLD);
    // Every open anomaly episode, oldest first (a health and an energy episode can run together).
    const open = events.events.filter(e => e.state === "open" && e.source === "anomaly")
      .sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
    const anomalous = high.length > 0 || open.length > 0;
    const episode = (e, i) => h("span", {class: "episode", "data-episode": e.id}, i ? "; " : "",
      `${e.rule} since ${clock(e.start, {seconds: true})}`,
      e.contributors && e.contributors.length
        ? h("span", {class: "contrib"}, " — driven by ", contributors(e.contributors)
            .map(c => `${c.signal} (${(100 * c.weight).toFixed(0)} %)`).join(", ")) : null);
    const banner = anomalous
      ? h("div", {class: "banner anomaly", "data-field": "anomaly", "data-value": "true"}, "Anomaly: ",
          open.length ? open.map(episode)
            : high.map(v => `${modelOf(v.signal)} score ${ZCharts.fmt(v.value)}`).join(", "))
      : h("div", {class: "banner ok", "data-field": "anomaly", "data-value": "false"}, "No anomaly");
    const numeric = series.series.filter(s => !HIDDEN.test(s.signal) && !SCORE.test(s.signal)
                                         && s.values.some(v => typeof v === "number"));
    const anomalySeries = scores.series;
    const latestList = h("table", {class: "latest"}, h("tbody", {}, latest.values
      .filter(v => !/^(kpi|anomaly\.contrib|fleet)\./.test(v.signal) && !SCORE.test(v.signal))
      .map(v => h("tr", {"data-signal": v.signal}, h("td", {}, v.signal),
        h("td", {}, field(v.signal, v.value, typeof v.value === "number" ? num(v.value, v.unit) : String(v.value))),
        h("td", {class: "muted"}, clock(v.ts, {seconds: true}))))));
    return h("div", {class: "machine", "data-machine": asset},
      h("h1", {}, h("a", {href: `#/line/${line}`}, line), " / ", asset.split("/").pop(), " ",
        stateBadge(vals.state ? vals.state.value : null), " ", dqMarker(rec)),
      banner, kpiProblem(k, line),
      h("section", {class: "tiles", ...kpiAttrs(k)}, kpiPeriod(k),
        kpiTile("OEE", rec, "oee", pct), tile("Availability", "availability", rec.availability, pct(rec.availability)),
        kpiTile("Performance", rec, "performance", pct), kpiTile("Quality", rec, "quality", pct),
        kpiTile("Good parts", rec, "good_count", num),
        tile("kWh / good part", "kwh_per_good_part", rec.kwh_per_good_part, num(rec.kwh_per_good_part, "kWh")),
        models.length ? models.map(v => tile(`Anomaly score · ${modelOf(v.signal)}`, v.signal, v.value, ZCharts.fmt(v.value)))
          : tile("Anomaly score", "anomaly_score", score, score === null ? "–" : ZCharts.fmt(score))),
      h("div", {class: "cols"},
        h("section", {"data-chart-anomaly": ""},
          h("h2", {}, `Anomaly scores, last ${Math.round((ta.end - ta.start) / 60000)} min (red line: model threshold)`),
          toChart(anomalySeries, {start: ta.start, end: ta.end, min: 0, max: 1, threshold: ANOMALY_THRESHOLD,
                                  name: s => modelOf(s.signal)})),
        h("section", {}, h("h2", {}, "Events"), alertList(events.events))),
      h("section", {}, h("h2", {}, `Signals, last ${S.cfg.span_min} min`),
        h("div", {class: "grid"}, numeric.map(s => h("div", {class: "cell", "data-chart": s.signal},
          h("h3", {}, s.signal, s.unit ? h("small", {class: "muted"}, ` ${s.unit}`) : null),
          toChart([s], {start: t.start, end: t.end, height: 110})))),
        h("h2", {}, "Latest values"), latestList));
  }

  // Progress against the programme's targets (energy efficiency, operating cost, productivity):
  // GET /api/v1/kpis/improvement for a site, area or line, a baseline period and a current one.
  // The periods are in the address (#/programme/<scope>?baseline_from=&baseline_to=&from=&to=), as
  // the API takes them: a plain date (midnight UTC) or RFC 3339 with an offset. By default the
  // previous 7 whole days (UTC) against the 7 days before. One API call per periods asked: the
  // report reads weeks of raw data, so it is kept until the user asks again (Show).
  const PERIOD_KEYS = ["baseline_from", "baseline_to", "from", "to"];
  const METRICS = {
    energy_efficiency: {label: "Energy efficiency", target: "energy_efficiency_pct", sign: +1},
    operating_cost: {label: "Operating cost", target: "operating_cost_reduction_pct", sign: -1},
    productivity: {label: "Productivity", target: "productivity_pct", sign: +1},
  };
  const UNITS = {kwh_per_good_part: "kWh / good part", good_parts_per_planned_hour: "good parts / planned h"};
  const unitText = u => UNITS[u] || (u && u.endsWith("_per_good_part") ? `${u.slice(0, -14)} / good part` : u || "");
  const signed = v => (v === null || v === undefined) ? "–" : `${v > 0 ? "+" : v < 0 ? "−" : "±"}${Math.abs(v).toFixed(1)} %`;
  const programmeCache = {};

  function defaultPeriods() {
    const day = 86400000, now = new Date();
    const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
    const d = ms => new Date(ms).toISOString().slice(0, 10);
    return {baseline_from: d(today - 14 * day), baseline_to: d(today - 7 * day), from: d(today - 7 * day), to: d(today)};
  }

  function metricRow(m, targets) {
    const spec = METRICS[m.metric] || {label: m.metric, target: null, sign: m.lower_is_better ? -1 : +1};
    const unit = unitText(m.unit);
    const goal = spec.target && targets ? targets[spec.target] : null;
    const status = m.met === true ? "met" : m.met === false ? "not met" : "not judged";
    const cell = (name, value, text, extra) => h("td", {}, field(name, value, text), extra || null);
    return h("tr", {"data-metric": m.metric, class: `met-${m.met === true ? "yes" : m.met === false ? "no" : "null"}`},
      h("td", {}, spec.label, h("small", {class: "muted"}, ` (${unit})`)),
      cell("baseline", m.baseline, num(m.baseline)),
      cell("current", m.current, num(m.current)),
      cell("change_pct", m.change_pct, signed(m.change_pct),
        m.efficiency_gain_pct !== undefined && m.efficiency_gain_pct !== null
          ? h("small", {class: "muted"}, " · efficiency ", field("efficiency_gain_pct", m.efficiency_gain_pct,
              signed(m.efficiency_gain_pct))) : null),
      cell("target", m.target, m.target === null || m.target === undefined ? "–"
        : `${m.lower_is_better ? "≤" : "≥"} ${num(m.target)}`,
        goal !== null && goal !== undefined ? h("small", {class: "muted"},
          ` (${spec.sign < 0 ? "−" : "+"}${goal} %${m.metric === "energy_efficiency" ? " efficiency" : ""})`) : null),
      h("td", {}, h("span", {class: `met st-${status.replace(" ", "-")}`, "data-field": "met",
                             "data-value": m.met === null || m.met === undefined ? "null" : String(m.met),
                             title: m.met === null || m.met === undefined
                               ? "Not judged: a figure is missing in a period (no good parts, no data), " +
                                 "or the baseline's is 0" : ""}, status)));
  }

  function dqWarning(rep, totals) {
    if (rep.data_quality_ok !== false) return null;
    const flags = totals.flatMap(t => t ? dqFlags(t) : []);
    const named = [...new Set(flags.map(f => `${f.machine ? f.machine.split("/").pop() + ": " : ""}${flagText(f)}`))];
    return h("p", {class: "dq-block", "data-field": "data_quality", "data-value": "false"},
      "⚠ Data quality: the KPI inputs of a period have problems, so these figures may be off",
      named.length ? ` — ${named.slice(0, 8).join("; ")}${named.length > 8 ? ` … (${named.length - 8} more)` : ""}` : "", ".");
  }

  function improvementTable(rep, name) {
    return h("section", {class: "programme-scope", "data-scope": name, "data-all-met": String(rep.all_met),
                         "data-data-quality-ok": String(rep.data_quality_ok)},
      h("table", {class: "programme"},
        h("thead", {}, h("tr", {}, ["Metric", "Baseline", "Current", "Change", "Target", "Status"].map(x => h("th", {}, x)))),
        h("tbody", {}, (rep.metrics || []).map(m => metricRow(m, rep.targets)))));
  }

  async function programme(scopeArg, query) {
    const cat = await catalogue();
    const scope = scopeArg || cat.lines[0];
    if (!scope) return h("p", {class: "muted"}, "No machine has reported a state yet.");
    const periods = {...defaultPeriods()};
    for (const key of PERIOD_KEYS) if (query.get(key)) periods[key] = query.get(key);
    const key = JSON.stringify([scope, periods]);
    let hit = programmeCache[key];
    if (hit && hit.node && document.getElementById("view").firstChild === hit.node) return hit.node;  // keep edits
    if (!hit) {
      hit = programmeCache[key] = {};
      try {
        hit.doc = await api(`${S.cfg.kpi_path}/improvement`, {scope, ...periods});
      } catch (err) {
        if (err.status === 401) { delete programmeCache[key]; throw err; }
        hit.error = err.detail === "Not Found"
          ? `${S.cfg.kpi_path}/improvement is not mounted (give ingest a KPI config with the plant file).`
          : err.text || err.message;
      }
    }
    const sites = [...new Set(cat.lines.map(l => l.split("/")[0]))];
    const inputs = PERIOD_KEYS.map(k => h("input", {type: "text", name: k, value: periods[k], size: "27",
                                                    "aria-label": k, placeholder: "YYYY-MM-DD or RFC 3339"}));
    const form = h("form", {class: "periods", "data-form": "programme"},
      h("label", {}, "Baseline ", inputs[0], " to ", inputs[1]), " ",
      h("label", {}, "Current ", inputs[2], " to ", inputs[3]), " ",
      h("button", {type: "submit"}, "Show"),
      h("small", {class: "muted"}, " each period runs from its start up to (not including) its end; " +
        "a plain date is midnight UTC"));
    form.addEventListener("submit", ev => {
      ev.preventDefault();
      const q = new URLSearchParams();
      for (const input of inputs) q.set(input.name, input.value.trim());
      const target = `#/programme/${scope}?${q}`;
      delete programmeCache[JSON.stringify([scope, Object.fromEntries(q)])];  // Show = ask again
      if (location.hash === target) render(); else location.hash = target;
    });
    const rep = hit.doc;
    const qs = `?${new URLSearchParams(periods)}`;  // other scopes, same periods
    const periodText = p => `${clock(p.start, {date: true})} – ${clock(p.end, {date: true})}`;
    const body = hit.error
      ? [h("p", {class: "error", "data-field": "programme-error", "data-value": hit.error}, hit.error)]
      : [h("p", {class: "muted", "data-periods": ""}, "Baseline ", field("baseline_period", rep.baseline.start, periodText(rep.baseline)),
           " · current ", field("current_period", rep.current.start, periodText(rep.current))),
         h("p", {class: "verdict", "data-field": "all_met", "data-value": String(rep.all_met)},
           rep.all_met ? "All three targets met." : "Not all targets met (a target is judged only when both periods have its figures)."),
         dqWarning(rep, [rep.baseline_total, rep.current_total]),
         improvementTable(rep, scope),
         (rep.lines || []).length && !(rep.lines.length === 1 && rep.lines[0].line === scope)
           ? h("div", {class: "programme-lines"}, rep.lines.map(ln => h("div", {"data-line": ln.line},
               h("h2", {}, h("a", {href: `#/programme/${ln.line}${qs}`}, ln.line),
                 ln.data_quality_ok === false ? h("span", {class: "dq-warn", "data-field": "data_quality", "data-value": "false",
                   title: "KPI data quality: this line's inputs have problems in a period"}, "⚠") : null),
               improvementTable(ln, ln.line))))
           : null];
    const node = h("div", {class: "programme-view", "data-scope": scope, "data-baseline-from": periods.baseline_from,
                           "data-baseline-to": periods.baseline_to, "data-from": periods.from, "data-to": periods.to},
      h("h1", {}, "Programme targets · ", scope),
      h("p", {class: "muted"}, "The regional programme's targets against a baseline: energy efficiency (kWh per good part), " +
        "operating cost (energy cost per good part) and productivity (good parts per planned hour). Scope: ",
        [...sites, ...cat.lines].flatMap((s, i) => [i ? " · " : "", s === scope ? h("b", {}, s)
          : h("a", {href: `#/programme/${s}${qs}`}, s)])),
      form, ...body);
    hit.node = node;
    return node;
  }

  async function render() {
    if (S.busy) return;
    S.busy = true;
    const status = document.getElementById("status");
    try {
      const raw = location.hash.replace(/^#\/?/, "");
      const q = raw.indexOf("?");
      const hash = decodeURIComponent(q < 0 ? raw : raw.slice(0, q));
      const query = new URLSearchParams(q < 0 ? "" : raw.slice(q + 1));
      let view;
      if (hash.startsWith("machine/")) view = await machinePage(hash.slice(8));
      else if (hash === "programme" || hash.startsWith("programme/")) view = await programme(hash.slice(10), query);
      else view = await overview(hash.startsWith("line/") ? hash.slice(5) : null);
      const cat = await catalogue();
      const here = hash.replace(/^(line|machine|programme)\/?/, "").split("/").slice(0, 3).join("/");
      const nav = document.getElementById("lines");
      nav.replaceChildren(...cat.lines.map(l => h("a", {href: `#/line/${l}`}, l)),
        h("a", {href: `#/programme/${cat.lines.includes(here) ? here : cat.lines[0] || ""}`, "data-nav": "programme"}, "Programme"));
      const main = document.getElementById("view");
      if (main.firstChild !== view) main.replaceChildren(view);
      S.updates += 1;
      document.body.dataset.updates = String(S.updates);
      status.textContent = `live · ${clock(Date.now(), {seconds: true})}`;
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
