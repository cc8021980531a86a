// Inline SVG charts: no library. lineChart(series, opts) returns an <svg> element.
// series: [{name, ts: [ms...], values: [number|null...], color}]; opts: {height, unit, min, max,
// threshold, start, end}. Values outside [min, max] are clipped; nulls break the line, and so does a
// step longer than 3x the series' median step (no data there: a stopped machine is not scored, and
// a straight line across would draw values nobody measured). The time axis is in the browser's
// time zone; its right end says the UTC offset.
"use strict";
const ZCharts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#4e9af1", "#f1a94e", "#5cc98b", "#e0605e", "#a57be8", "#3fc4c4", "#d4c04a", "#e27bc0",
                   "#8da0b3", "#9bd35b"];
  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  // Numbers as shown: integers as they are; >= 10 with at most one decimal; below that three
  // significant figures (0.00748 kWh, not 0.01: small figures such as kWh per part stay apart).
  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a >= 1000) return v.toFixed(0);
    if (a >= 10) return v.toFixed(1);
    if (a >= 1) return v.toFixed(2);
    return String(Number(v.toPrecision(3)));
  }
  // A time with its UTC offset ("14:05 GMT+8"): the browser's time zone, said explicitly, since
  // the plant's may differ. opts: {seconds, date} (date: the day too).
  function clock(ms, opts) {
    const o = opts || {};
    const f = new Intl.DateTimeFormat(undefined, {
      hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "shortOffset",
      ...(o.seconds ? {second: "2-digit"} : {}), ...(o.date ? {year: "numeric", month: "2-digit", day: "2-digit"} : {})});
    return f.format(new Date(ms));
  }
  function medianStep(ts) {
    const steps = [];
    for (let k = 1; k < ts.length; k++) if (ts[k] > ts[k - 1]) steps.push(ts[k] - ts[k - 1]);
    if (!steps.length) return Infinity;
    steps.sort((a, b) => a - b);
    return steps[Math.floor(steps.length / 2)];
  }
  function lineChart(series, opts) {
    const W = 600, H = opts.height || 160, L = 44, R = 8, T = 8, B = 18;
    const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, class: "chart", preserveAspectRatio: "none",
                           role: "img"});
    let lo = opts.min, hi = opts.max;
    const all = series.flatMap(s => s.values.filter(v => v !== null && Number.isFinite(v)));
    if (lo === undefined) lo = all.length ? Math.min(...all) : 0;
    if (hi === undefined) hi = all.length ? Math.max(...all) : 1;
    if (opts.threshold !== undefined) { lo = Math.min(lo, opts.threshold); hi = Math.max(hi, opts.threshold); }
    if (hi - lo < 1e-9) { hi = lo + 1; }
    const t0 = opts.start, t1 = opts.end;
    const x = t => L + (W - L - R) * (t - t0) / Math.max(1, t1 - t0);
    const y = v => T + (H - T - B) * (1 - (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo));
    svg.appendChild(el("rect", {x: L, y: T, width: W - L - R, height: H - T - B, class: "plot"}));
    for (const v of [lo, (lo + hi) / 2, hi]) {
      svg.appendChild(el("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid"}));
      svg.appendChild(el("text", {x: L - 4, y: y(v) + 4, class: "axis", "text-anchor": "end"}, fmt(v)));
    }
    const tl = new Date(t0).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
    const tr = clock(t1);
    svg.appendChild(el("text", {x: L, y: H - 4, class: "axis"}, tl));
    svg.appendChild(el("text", {x: W - R, y: H - 4, class: "axis", "text-anchor": "end"}, tr));
    if (opts.threshold !== undefined) {
      svg.appendChild(el("line", {x1: L, x2: W - R, y1: y(opts.threshold), y2: y(opts.threshold),
                                  class: "threshold"}));
    }
    series.forEach((s, i) => {
      const gap = 3 * medianStep(s.ts);
      let d = "", pen = false, last = -Infinity;
      s.ts.forEach((t, k) => {
        const v = s.values[k];
        if (v === null || !Number.isFinite(v) || t < t0 || t > t1) { pen = false; return; }
        d += `${pen && t - last <= gap ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
        last = t;
      });
      const color = s.color || PALETTE[i % PALETTE.length];
      const path = el("path", {d, class: "series", stroke: color});
      path.appendChild(el("title", {}, s.name));
      svg.appendChild(path);
    });
    return svg;
  }
  function legend(series) {
    const div = document.createElement("div");
    div.className = "legend";
    series.forEach((s, i) => {
      const span = document.createElement("span");
      const swatch = document.createElement("i");  // a style property, not markup: the page's CSP
      swatch.style.background = s.color || PALETTE[i % PALETTE.length];  // allows no inline style
      span.appendChild(swatch);
      span.appendChild(document.createTextNode(s.name));
      div.appendChild(span);
    });
    return div;
  }
  return {lineChart, legend, fmt, clock, PALETTE};
})();
