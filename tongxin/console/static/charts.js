// Small SVG charts for the console: horizontal bars of rates and stacked bars per day.
// No library: the charts are built as DOM nodes (the page's CSP forbids inline markup).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function pct(v) {
  return v === null || v === undefined ? "—" : `${Math.round(v * 1000) / 10}%`;
}

// rows: [{label, value (0..1 or null), note}] → a horizontal bar chart; bars under
// warnBelow (when given) are drawn as a warning.
function rateBars(title, rows, warnBelow = null) {
  const rowH = 26;
  const labelW = 150;
  const barW = 220;
  const width = labelW + barW + 60;
  const height = rows.length * rowH + 8;
  const svg = svgEl("svg", {
    class: "chart rate-chart",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": title,
  });
  svg.appendChild(svgEl("title", {}, title));
  rows.forEach((r, i) => {
    const y = i * rowH + 4;
    const g = svgEl("g", { class: "bar-row", "data-label": r.label, "data-value": pct(r.value) });
    g.appendChild(svgEl("text", { x: labelW - 8, y: y + 15, "text-anchor": "end", class: "axis" }, r.label));
    g.appendChild(svgEl("rect", { x: labelW, y, width: barW, height: rowH - 8, class: "track" }));
    const none = r.value === null || r.value === undefined;
    const w = none ? 0 : r.value * barW;
    const cls = none ? "bar none" : warnBelow !== null && r.value < warnBelow ? "bar low" : "bar";
    g.appendChild(svgEl("rect", { x: labelW, y, width: w, height: rowH - 8, class: cls }));
    g.appendChild(svgEl("text", { x: labelW + barW + 6, y: y + 14, class: "value" }, pct(r.value)));
    if (r.note) g.appendChild(svgEl("title", {}, r.note));
    svg.appendChild(g);
  });
  return svg;
}

// days: [{day, routine, general, major, special, total}], series: [{key, label}]
function stackedDays(title, days, series) {
  const width = Math.max(320, days.length * 22 + 50);
  const height = 200;
  const left = 34;
  const bottom = 28;
  const top = 10;
  const plotH = height - bottom - top;
  const max = Math.max(1, ...days.map((d) => d.total));
  const step = (width - left - 8) / Math.max(1, days.length);
  const svg = svgEl("svg", {
    class: "chart day-chart",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": title,
  });
  svg.appendChild(svgEl("title", {}, title));
  const ticks = max <= 4 ? max : 4;
  for (let i = 0; i <= ticks; i++) {
    const v = Math.round((max * i) / ticks);
    const y = top + plotH - (plotH * v) / max;
    svg.appendChild(svgEl("line", { x1: left, x2: width - 4, y1: y, y2: y, class: "grid" }));
    svg.appendChild(svgEl("text", { x: left - 4, y: y + 4, "text-anchor": "end", class: "axis" }, String(v)));
  }
  days.forEach((d, i) => {
    const x = left + i * step + step * 0.15;
    const w = step * 0.7;
    let y = top + plotH;
    const g = svgEl("g", { class: "day", "data-day": d.day, "data-total": d.total });
    series.forEach((s) => {
      const n = d[s.key] || 0;
      if (!n) return;
      const h = (plotH * n) / max;
      y -= h;
      const rect = svgEl("rect", { x, y, width: w, height: h, class: `tier-${s.key}` });
      rect.appendChild(svgEl("title", {}, `${d.day} ${s.label}：${n}`));
      g.appendChild(rect);
    });
    if (days.length <= 14 || i % Math.ceil(days.length / 10) === 0 || i === days.length - 1) {
      g.appendChild(
        svgEl("text", { x: x + w / 2, y: height - 10, "text-anchor": "middle", class: "axis" }, d.day.slice(5)),
      );
    }
    svg.appendChild(g);
  });
  return svg;
}

window.TongxinCharts = { rateBars, stackedDays, pct };
