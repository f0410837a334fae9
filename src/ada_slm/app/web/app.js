// ada-slm study view. Polls /api/state every 2 s; fetches curves, the analysis or a run's page only when the
// files behind them changed (the state carries their versions). Plots are inline SVG drawn here: no library.
"use strict";

const POLL_MS = 2000;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
const $ = (id) => document.getElementById(id);
const app = { state: null, versions: {}, curves: null, analysis: null, analysisPending: false, route: null, run: null,
  runVersion: null };

// ------------------------------------------------------------------------------------------ DOM helpers
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v; else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, v);
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

function fill(id, ...children) { const el = $(id); el.replaceChildren(...children.flat().filter((c) => c != null)); return el; }

function duration(s) {
  if (s === null || s === undefined) return "—";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function num(x, digits) { return x === null || x === undefined ? "—" : Number(x).toFixed(digits); }

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

// ------------------------------------------------------------------------------------------ plots
function niceTicks(lo, hi, n) {
  const span = hi - lo || 1, raw = span / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-6; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

// series: [{points: [[x, y]], color, dashed, dots}]; box: {xmax, ymin, ymax}
function lineChart(series, box, width = 340, height = 190) {
  const m = { l: 42, r: 8, t: 8, b: 24 }, w = width - m.l - m.r, ht = height - m.t - m.b;
  const xmax = box.xmax || 1, ymin = box.ymin, ymax = box.ymax > box.ymin ? box.ymax : box.ymin + 1;
  const X = (x) => m.l + (x / xmax) * w, Y = (y) => m.t + ht - ((y - ymin) / (ymax - ymin)) * ht;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  for (const t of niceTicks(ymin, ymax, 4)) {
    root.append(svg("line", { x1: m.l, x2: m.l + w, y1: Y(t), y2: Y(t), stroke: "#eceef2" }),
      svg("text", { x: m.l - 4, y: Y(t) + 3, "text-anchor": "end" }, String(t)));
  }
  for (const t of niceTicks(0, xmax, 5).filter((t) => Number.isInteger(t))) {
    root.append(svg("text", { x: X(t), y: m.t + ht + 14, "text-anchor": "middle" }, String(t)));
  }
  root.append(svg("line", { x1: m.l, x2: m.l, y1: m.t, y2: m.t + ht, stroke: "#9aa3b2" }),
    svg("line", { x1: m.l, x2: m.l + w, y1: m.t + ht, y2: m.t + ht, stroke: "#9aa3b2" }));
  for (const s of series) {
    const pts = s.points.filter((p) => p[1] !== null && Number.isFinite(p[1]));
    if (!pts.length) continue;
    root.append(svg("polyline", { points: pts.map((p) => `${X(p[0])},${Y(p[1])}`).join(" "), fill: "none",
      stroke: s.color, "stroke-width": 1.6, "stroke-dasharray": s.dashed ? "5 3" : null, opacity: s.dashed ? 1 : 0.75 }));
    if (s.dots) for (const p of pts) root.append(svg("circle", { cx: X(p[0]), cy: Y(p[1]), r: 2.8, fill: s.color }));
  }
  return root;
}

// rows: [{label, mean, low, high, color}]; a dot with its 95 % CI per row, and a zero line when 0 is in range
function intervalChart(rows, title, width = 460) {
  const rowH = 22, m = { l: 110, r: 16, t: 22, b: 22 }, height = m.t + m.b + rowH * rows.length, w = width - m.l - m.r;
  const values = rows.flatMap((r) => [r.low, r.high, r.mean]).filter((v) => v !== null && Number.isFinite(v));
  let lo = Math.min(0, ...values), hi = Math.max(0, ...values);
  if (hi - lo < 1e-9) hi = lo + 1;
  const pad = (hi - lo) * 0.05; lo -= pad; hi += pad;
  const X = (x) => m.l + ((x - lo) / (hi - lo)) * w;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" },
    svg("text", { x: m.l, y: 12 }, title));
  for (const t of niceTicks(lo, hi, 5)) {
    root.append(svg("line", { x1: X(t), x2: X(t), y1: m.t, y2: height - m.b, stroke: t === 0 ? "#9aa3b2" : "#eceef2" }),
      svg("text", { x: X(t), y: height - 6, "text-anchor": "middle" }, String(t)));
  }
  rows.forEach((r, i) => {
    const y = m.t + rowH * i + rowH / 2;
    root.append(svg("text", { x: m.l - 6, y: y + 3, "text-anchor": "end" }, r.label));
    if (r.mean === null || !Number.isFinite(r.mean)) return;
    if (r.low !== null && r.high !== null) {
      root.append(svg("line", { x1: X(r.low), x2: X(r.high), y1: y, y2: y, stroke: r.color, "stroke-width": 2 }));
    }
    root.append(svg("circle", { cx: X(r.mean), cy: y, r: 4, fill: r.color }));
  });
  return root;
}

// ------------------------------------------------------------------------------------------ overview
const STATE_WORD = { complete: "complete", running: "running", pending: "pending", failed: "failed",
  interrupted: "interrupted", unreadable: "unreadable" };

function cellDetail(r) {
  if (r.state === "complete") {
    return r.final_val_loss !== null && r.final_val_loss !== undefined ? `held-out loss ${num(r.final_val_loss, 3)}`
      : `${r.n_items ?? "?"} items evaluated`;
  }
  if (r.state === "running" && r.total_steps) {
    return `step ${r.step}/${r.total_steps} · ETA ${duration(r.eta_s)}` + (r.loss != null ? ` · loss ${num(r.loss, 3)}` : "");
  }
  return r.detail || "";
}

// A comparison (`ada-slm compare --serve`): runs made elsewhere, read once; no run cells, progress or curves.
function renderCompareHeader(st) {
  document.title = `${st.study} · ada-slm compare`;
  fill("title", h("a", { href: "#/" }, `Comparison ${st.study}`));
  fill("subtitle", st.provenance + (st.results ? ` · report in ${st.results}` : ""));
  fill("counts", `${st.imported.rows.length} runs, read once`);
  fill("notes", st.description ? h("p", {}, st.description) : null);
  $("grid").hidden = true; $("curves-box").hidden = true; $("decision-box").hidden = true;
  $("imported").hidden = false;
  fill("blocks-title", "Items and power");
  fill("imported", h("thead", {}, h("tr", {}, st.imported.header.map((x) => h("th", {}, x)))),
    h("tbody", {}, st.imported.rows.map((row) => h("tr", { "data-arm": row[0] }, row.map((c) => h("td", {}, c))))));
}

function renderHeader(st) {
  if (st.kind === "compare") { renderCompareHeader(st); return; }
  document.title = `${st.study} · ada-slm`;
  fill("title", h("a", { href: "#/" }, `Study ${st.study}`));
  const runner = st.runner === true ? "a runner is at work" : st.runner === false ? "no runner active" : "runner unknown";
  fill("subtitle", `scale ${st.scale || "as written"} · baseline ${st.baseline} · ${runner} · ${st.results}`);
  const c = st.counts;
  const parts = Object.entries(c).filter(([k, v]) => v || ["complete", "pending"].includes(k)).map(([k, v]) => `${k} ${v}`);
  if (st.compute_left_s) parts.push(`≈ ${duration(st.compute_left_s)} of runs left`);
  fill("counts", parts.join(" · "));
  fill("notes", st.notes.map((n) => h("div", { class: "note" }, n)));
}

function renderGrid(st) {
  const byKey = Object.fromEntries(st.runs.map((r) => [r.key, r]));
  const head = h("tr", {}, h("th", {}, "arm"), st.seeds.map((s) => h("th", {}, `seed ${s}`)));
  const rows = st.arms.map((arm) => h("tr", { "data-arm": arm },
    h("th", {}, arm + (arm === st.baseline ? " (baseline)" : "")),
    st.seeds.map((seed) => {
      const r = byKey[`${arm}/seed${seed}`];
      if (!r) return h("td", {});
      const detail = cellDetail(r);
      // training: when the record (steps so far) was last written; starting or evaluating: for how long
      const ago = r.state !== "running" || r.updated_s_ago == null ? ""
        : r.total_steps ? ` · record written ${duration(r.updated_s_ago)} ago` : ` · for ${duration(r.updated_s_ago)}`;
      return h("td", {}, h("a", { class: "cell", href: `#/run/${encodeURIComponent(arm)}/${seed}`, "data-run": r.key,
        "data-state": r.state, title: r.detail || detail },
        h("span", { class: "what" }, STATE_WORD[r.state] || r.state),
        h("span", { class: "detail" }, detail.length > 90 ? detail.slice(0, 87) + "…" : detail, ago)));
    })));
  fill("grid", h("thead", {}, head), h("tbody", {}, rows));
}

function armColor(arm) { return COLORS[Math.max(0, app.state.arms.indexOf(arm)) % COLORS.length]; }

function renderCurves() {
  const runs = Object.values(app.curves.runs);
  if (!runs.length) { fill("curves", h("p", { class: "muted" }, "No run has trained yet.")); return; }
  const ys = runs.flatMap((r) => [...r.train, ...r.val].map((p) => p[1])).filter((y) => y !== null && Number.isFinite(y));
  const ymin = Math.min(...ys), ymax = Math.max(...ys), pad = (ymax - ymin) * 0.05 || 0.05;
  const panels = [];
  for (const arm of app.state.arms) {
    const mine = runs.filter((r) => r.arm === arm).sort((a, b) => a.seed - b.seed);
    if (!mine.length) continue;
    const xmax = Math.max(...mine.flatMap((r) => [...r.train, ...r.val].map((p) => p[0])));
    const series = mine.flatMap((r, i) => {
      const color = COLORS[i % COLORS.length];
      return [{ points: r.train, color }, { points: r.val, color, dashed: true, dots: true }];
    });
    panels.push(h("div", { class: "panel", "data-arm": arm },
      h("div", { class: "label" }, arm + (arm === app.state.baseline ? " (baseline)" : "")),
      lineChart(series, { xmax, ymin: ymin - pad, ymax: ymax + pad }),
      h("div", { class: "legend" }, mine.map((r, i) => h("span", { style: `color:${COLORS[i % COLORS.length]}` },
        `━ seed ${r.seed}`)))));
  }
  fill("curves", panels);
}

// The analysis is report.md's: every cell below is a string the report renders, placed under the report's headers.
function renderAnalysis(a) {
  if (!a.available) {
    fill("analysis-note", h("div", { class: "note" }, a.reason));
    for (const id of ["arms", "ci-chart", "all-metrics", "blocks"]) fill(id);
    $("all-metrics-box").hidden = true;
    fill("comparisons", h("p", { class: "muted" }, "Each arm is compared with the baseline once both have finished runs."));
    fill("decision", h("p", { class: "muted" }, "The decision questions are answered from finished runs."));
    renderCriteria(null);
    renderAnswer(null);
    return;
  }
  fill("analysis-note", a.errors.map((e) => h("div", { class: "note error" }, e)));
  $("all-metrics-box").hidden = false;
  const metric = a.metric;
  fill("metric-name", `the ${a.kind === "compare" ? "primary" : "decision"} metric is ${metric}; every number below is the report's`);
  fill("baseline-name", `${a.baseline}; the training run is the unit, 95% CI, Holm p, one rule for "supported"`);
  const numeric = new Set(["held_out_loss", "final_train_loss", "metric", "seed_item_sd"]);
  fill("arms", h("thead", {}, h("tr", {}, a.summary_header.map(([, title]) => h("th", {}, title)))),
    h("tbody", {}, a.arms.map((r) => h("tr", { "data-arm": r.arm, class: r.baseline ? "baseline-row" : null },
      a.summary_header.map(([key]) => h("td", { "data-col": key, class: numeric.has(key) ? "num" : null }, r.cells[key]))))));
  const ciRows = a.arms.map((r) => ({ label: r.arm, color: armColor(r.arm), ...(r.metrics[metric] || { mean: null }) }));
  const deltaRows = a.arms.filter((r) => !r.baseline).map((r) => {
    const c = ((a.comparisons[r.arm] || {}).rows || []).find((x) => x.metric === metric);
    return { label: r.arm, color: armColor(r.arm), ...(c ? c.delta : { mean: null }) };
  });
  fill("ci-chart", intervalChart(ciRows, `${metric} per arm: mean and 95% CI`),
    intervalChart(deltaRows, `Δ ${metric} against ${a.baseline}: mean and 95% CI`));
  fill("all-metrics", h("thead", {}, h("tr", {}, h("th", {}, "metric"), a.arms.map((r) => h("th", {}, r.arm)))),
    h("tbody", {}, a.metrics.map((m) => h("tr", { "data-metric": m }, h("td", {}, m),
      a.arms.map((r) => h("td", { class: "num" }, r.metrics[m] ? r.metrics[m].text : "—"))))));
  renderAnswer(a.answer);
  renderComparisons(a);
  renderDecision(a.decision);
  renderCriteria(a.criteria);
  fill("blocks", a.blocks.map(renderBlock));
}

// The answer first: report.md's opening lines (each question, the next run, the criteria); **x** is bold there.
function renderAnswer(lines) {
  $("answer-box").hidden = !(lines && lines.length);
  fill("answer", (lines || []).map((line) => h("p", { class: "answer-line" },
    line.split("**").map((part, i) => (i % 2 ? h("strong", {}, part) : part)))));
}

// The study's success criteria: report.md's table, met / not met / undecided from the runs' CIs.
function renderCriteria(c) {
  $("criteria-box").hidden = !c;
  if (!c) { fill("criteria"); return; }
  const keys = c.rows.length ? Object.keys(c.rows[0]) : [];
  fill("criteria", h("p", { class: "muted" }, c.intro), h("table", { class: "data", "data-table": "criteria" },
    h("thead", {}, h("tr", {}, c.header.map((x) => h("th", {}, x)))),
    h("tbody", {}, c.rows.map((r) => h("tr", {}, keys.map((k) => h("td", { "data-col": k,
      class: k !== "judged" ? null : r.judged === "met" ? "yes" : r.judged === "not met" ? "no" : null }, r[k])))))));
}

function renderComparisons(a) {
  const blocks = [];
  for (const r of a.arms) {
    const comp = a.comparisons[r.arm];
    if (r.baseline || !comp) continue;
    blocks.push(h("h3", {}, `${r.arm} vs ${a.baseline}`), ...comp.notes.map((n) => h("p", { class: "muted" }, n)));
    if (!comp.rows.length) continue;
    const keys = Object.keys(comp.rows[0].cells);
    blocks.push(h("div", { class: "scroll" }, h("table", { class: "data small", "data-arm": r.arm },
      h("thead", {}, h("tr", {}, comp.header.map((x) => h("th", {}, x)))),
      h("tbody", {}, comp.rows.map((c) => h("tr", { "data-metric": c.metric }, keys.map((k) =>
        h("td", { "data-col": k, class: k === "difference" ? (c.supported ? "yes" : "no")
          : ["metric", "percent", "ratio"].includes(k) ? null : "num" }, c.cells[k]))))))));
  }
  fill("comparisons", blocks);
}

function renderDecision(d) {
  if (!d) { fill("decision", h("p", { class: "muted" }, "The study defines no decision questions.")); return; }
  fill("decision", h("p", { class: "muted" }, d.intro), h("table", { class: "data" },
    h("thead", {}, h("tr", {}, d.header.map((x) => h("th", {}, x)))),
    h("tbody", {}, d.questions.map((q) => h("tr", { "data-question": q.question },
      h("td", {}, q.question), h("td", { "data-col": "comparison" }, q.comparison),
      h("td", { "data-col": "evidence" }, q.evidence),
      h("td", { "data-col": "answer", class: q.answer === "yes" ? "yes" : "no" }, q.answer))))),
  d.notes.map((n, i) => h("p", { class: i === 0 ? "recommend" : "muted" }, n)));
}

// A block of the report's own rendering (designs, power, adaptive rounds): heading, paragraph or table.
function renderBlock(b) {
  if (b[0] === "h") return h(`h${Math.min(6, b[1] + 1)}`, {}, b[2]);
  if (b[0] === "p") return h("p", {}, b[1].replaceAll("**", ""));
  return h("div", { class: "scroll" }, h("table", { class: "data small" }, h("thead", {}, h("tr", {}, b[1].map((x) => h("th", {}, x)))),
    h("tbody", {}, b[2].map((row) => h("tr", {}, row.map((c) => h("td", {}, c)))))));
}

// ------------------------------------------------------------------------------------------ a run's page
function flatten(obj, prefix = "", out = []) {
  if (obj === null || typeof obj !== "object" || (Array.isArray(obj) && !obj.some((v) => v && typeof v === "object"))) {
    out.push([prefix, Array.isArray(obj) ? obj.join(", ") : obj === null ? "null" : String(obj)]);
  } else if (Array.isArray(obj)) {
    out.push([prefix, JSON.stringify(obj)]);
  } else {
    for (const [k, v] of Object.entries(obj)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  }
  return out;
}

function kvTable(id, obj, empty) {
  const rows = obj ? flatten(obj) : [];
  fill(id, rows.length ? h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))))
    : h("tbody", {}, h("tr", {}, h("td", { class: "muted" }, empty))));
}

function options(id, values) {
  const sel = $(id), keep = sel.value;
  sel.replaceChildren(h("option", { value: "" }, "all"), ...values.map((v) => h("option", { value: v }, v)));
  sel.value = values.includes(keep) ? keep : "";
}

function renderRun(d) {
  fill("run-title", `${d.arm} / seed ${d.seed}`, d.arm === app.state?.baseline ? " (baseline)" : "");
  const detail = cellDetail(d.state);
  fill("run-state", h("span", { class: "cell", style: "display:inline-block", "data-state": d.state.state },
    h("span", { class: "what" }, d.state.state), detail ? ` · ${detail}` : ""), " ", h("span", { class: "muted small" }, d.run_dir));
  fill("run-errors", d.errors.map((e) => h("div", { class: "note error" }, e)));
  if (d.curve) {
    const pts = [...d.curve.train, ...d.curve.val], ys = pts.map((p) => p[1]).filter(Number.isFinite);
    const pad = (Math.max(...ys) - Math.min(...ys)) * 0.05 || 0.05;
    fill("run-curve", h("div", { class: "panel", style: "display:inline-block" },
      h("div", { class: "label" }, "loss per answer token: train (solid), held-out (dashed)"),
      lineChart([{ points: d.curve.train, color: COLORS[0] }, { points: d.curve.val, color: COLORS[1], dashed: true, dots: true }],
        { xmax: Math.max(...pts.map((p) => p[0])), ymin: Math.min(...ys) - pad, ymax: Math.max(...ys) + pad }, 520, 220)));
  } else {
    fill("run-curve", h("p", { class: "muted" }, d.config ? "No training step recorded yet." : "The base model: no training."));
  }
  kvTable("run-config", d.config ? d.config : { base: d.base, adapter: "none (the untrained base model)" }, "");
  // the record's status, training summary, evaluation and provenance first; its resolved config last
  const record = d.record && { status: d.record.status, train: d.record.train, eval: d.record.eval, meta: d.record.meta, ...d.record };
  kvTable("run-record", record, "No record.json yet.");
  options("filter-lang", [...new Set(d.items.map((r) => r.lang).filter(Boolean))].sort());
  options("filter-category", [...new Set(d.items.map((r) => r.category).filter(Boolean))].sort());
  renderItems();
}

function renderItems() {
  const d = app.run;
  if (!d) return;
  const lang = $("filter-lang").value, cat = $("filter-category").value, text = $("filter-text").value.toLowerCase();
  const shown = d.items.filter((r) => (!lang || r.lang === lang) && (!cat || r.category === cat) &&
    (!text || `${r.prompt} ${r.output}`.toLowerCase().includes(text)));
  fill("items-count", d.items.length ? `${shown.length} of ${d.items.length} shown` : "");
  if (!d.items.length) { fill("items", h("tbody", {}, h("tr", {}, h("td", { class: "muted" }, "No eval.jsonl yet.")))); return; }
  const head = ["item", "lang", "category", "prompt", "output", "metrics (non-null)"];
  fill("items", h("thead", {}, h("tr", {}, head.map((x) => h("th", {}, x)))),
    h("tbody", {}, shown.map((r) => h("tr", { "data-item": r.id, "data-lang": r.lang, "data-category": r.category },
      h("td", {}, r.id, r.sample != null ? ` #${r.sample}` : ""), h("td", {}, r.lang), h("td", {}, r.category),
      h("td", { class: "prompt" }, r.prompt), h("td", { class: "output" }, r.output === "" ? h("span", { class: "muted" }, "(empty)") : r.output),
      h("td", {}, Object.entries(r.metrics || {}).filter(([, v]) => v !== null).map(([k, v]) =>
        h("span", { class: v > 0 ? "chip hit" : "chip", title: k }, `${k} ${num(v, 2)}`)))))));
}

// ------------------------------------------------------------------------------------------ routing and polling
function parseRoute() {
  const m = location.hash.match(/^#\/run\/([^/]+)\/(-?\d+)$/);
  return m ? { arm: decodeURIComponent(m[1]), seed: Number(m[2]) } : null;
}

async function showRoute() {
  app.route = parseRoute();
  $("overview").hidden = !!app.route;
  $("runpage").hidden = !app.route;
  app.run = null; app.runVersion = null;
  if (app.route && app.state) await refreshRun(app.state);
}

async function refreshRun(st) {
  if (!app.route) return;
  const key = `${app.route.arm}/seed${app.route.seed}`, entry = st.runs.find((r) => r.key === key);
  const version = entry ? entry.version : null;
  if (app.run && version === app.runVersion) return;
  try {
    app.run = await getJSON(`/api/run/${encodeURIComponent(app.route.arm)}/${app.route.seed}`);
    app.runVersion = version;
    renderRun(app.run);
  } catch (e) {
    fill("run-title", key); fill("run-errors", h("div", { class: "note error" }, String(e.message || e)));
  }
}

// The statistics take a while on a large study (and the server yields the CPU to the runner): fetched beside the
// polling, never blocking it; the numbers on screen stay until the new ones arrive.
function refreshAnalysis() {
  app.analysisPending = true;
  fill("analysis-status", app.analysis ? "updating with the runs that just finished…" : "computing…");
  getJSON("/api/analysis").then((a) => {
    app.analysis = a;
    app.versions.analysis = a.version;
    renderAnalysis(a);
  }).catch((e) => {
    fill("analysis-note", h("div", { class: "note error" }, `The analysis could not be fetched (${e.message || e}); retrying.`));
  }).finally(() => { app.analysisPending = false; fill("analysis-status"); });
}

function setLive(ok, text) {
  const el = $("live");
  el.dataset.live = ok ? "ok" : "down";
  el.textContent = text;
}

async function tick() {
  try {
    const st = await getJSON("/api/state");
    app.state = st;
    renderHeader(st);
    if (st.kind !== "compare") renderGrid(st);
    if (st.kind !== "compare" && st.versions.curves !== app.versions.curves) {
      app.curves = await getJSON("/api/curves");
      app.versions.curves = st.versions.curves;
      renderCurves();
    }
    if (st.versions.analysis !== app.versions.analysis && !app.analysisPending) refreshAnalysis();
    await refreshRun(st);
    setLive(true, st.kind === "compare" ? "a fixed result, read once" : `live · updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    setLive(false, `server unreachable, retrying (${e.message || e})`);
  } finally {
    setTimeout(tick, POLL_MS);
  }
}

for (const id of ["filter-lang", "filter-category", "filter-text"]) $(id).addEventListener("input", renderItems);
window.addEventListener("hashchange", showRoute);
showRoute();
tick();
