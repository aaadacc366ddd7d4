/* trainscape explorer: draws the page from the data embedded in it and fetches nothing.
 *
 * Data (see explorer.py): META (JSON) and gzip+base64 typed arrays, one per run for the axis
 * indices, label codes and quantized metrics, and one per sampled run for its curve and exact
 * metrics. Every count on the page is computed here from the per-run arrays, so the map, its
 * slices, pooling and brushes always count every run. */
"use strict";
(function () {
  const META = JSON.parse(document.getElementById("ts-meta").textContent);
  const SVGNS = "http://www.w3.org/2000/svg";
  const LABELS = META.labels;
  const NL = LABELS.length;
  const COLORS = LABELS.map((l) => META.colors[l]);
  const NAN_COLOR = "#D9D9D9";  // as the report's figures: no value
  const INF_COLOR = "#D55E00";  // +inf: a loss that blew up
  const EMPTY_COLOR = "#ffffff";
  const VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89",
    "#35b779", "#6ece58", "#b5de2b", "#fde725"];
  const MAX_DRAWN = 150;  // curves drawn for one cell (the sample is bounded; this keeps it legible)
  const MAX_TABLE = 100;
  const PC_LINES = 3000;  // runs drawn as lines in the parallel coordinates (brushes use every run)
  const AX = META.axes;
  const MET = META.metrics;

  // ------------------------------------------------------------------ helpers
  function h(tag, attrs, parent, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function s(tag, attrs, parent, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function fmt(v) {
    if (typeof v === "string") return v;
    if (v === null || v === undefined) return "";
    if (Number.isNaN(v)) return "nan";
    if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
    if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) {
      return v.toExponential(2).replace(/\.?0+e/, "e").replace("e+", "e");
    }
    return String(+v.toPrecision(3));
  }
  function lerpColor(c0, c1, t) {
    const p = (c, i) => parseInt(c.slice(1 + 2 * i, 3 + 2 * i), 16);
    let out = "#";
    for (let i = 0; i < 3; i++) {
      const v = Math.round(p(c0, i) + (p(c1, i) - p(c0, i)) * t);
      out += v.toString(16).padStart(2, "0");
    }
    return out;
  }
  function viridis(t) {
    const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
    return lerpColor(VIRIDIS[i], VIRIDIS[i + 1], x - i);
  }
  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((st) => st >= raw);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) out.push(v);
    return out;
  }
  function decode(name) {
    const text = document.getElementById("b:" + name).textContent.trim();
    let bytes;
    if (typeof Uint8Array.fromBase64 === "function") {
      bytes = Uint8Array.fromBase64(text);
    } else {
      const bin = atob(text);
      bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    }
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    const T = {u8: Uint8Array, u16: Uint16Array, u32: Uint32Array, f32: Float32Array,
      f64: Float64Array}[META.blobs[name]];
    return new Response(stream).arrayBuffer().then((buf) => new T(buf));
  }

  // ------------------------------------------------------------------ data
  const D = {};
  let N, LAB, AXI, MC, SROW, SID, SCURVE, SMET, NS, STEPS, NP;
  function metricValue(j, c) {  // a quantized code -> the value it stands for
    const m = MET[j];
    if (c === 0) return NaN;
    if (c === 1) return -Infinity;
    if (c === m.top) return Infinity;
    const t = (c - 2) / (m.top - 3);
    return m.log ? m.lo * Math.pow(m.hi / m.lo, t) : m.lo + (m.hi - m.lo) * t;
  }
  function binValue(a, b) {  // a bin of axis a: its value, or [first, last] when it groups several
    const ax = AX[a];
    const lo = b * ax.width;
    const hi = Math.min(ax.values.length, lo + ax.width) - 1;
    return hi === lo ? ax.values[lo] : [ax.values[lo], ax.values[hi]];
  }
  function binText(a, b) {
    const v = binValue(a, b);
    return Array.isArray(v) ? fmt(v[0]) + "…" + fmt(v[1]) : fmt(v);
  }
  function dims() {  // parallel-coordinates dimensions: every axis, then every metric
    return AX.map((a, i) => ({key: "a" + i, name: a.name, arr: AXI[i], max: a.values.length - 1,
      axis: i})).concat(MET.map((m, j) => ({key: "m" + j, name: m.name, arr: MC[j],
      max: m.top, metric: j})));
  }

  // ------------------------------------------------------------------ state
  const st = {x: -1, y: -1, color: "label", mode: AX.map(() => -1), brush: {}, sel: null,
    focus: [0, 0]};
  {
    const names = AX.map((a) => a.name);
    st.x = names.indexOf("learning_rate");
    if (st.x < 0) st.x = AX.length ? 0 : -1;
    // y: the first other axis that is not the seed (as the report's maps), pooling the seeds
    st.y = names.findIndex((n, i) => i !== st.x && n !== "seed");
    if (st.y < 0) st.y = names.findIndex((n, i) => i !== st.x);
  }
  let agg = null;

  function aggregate() {
    const x = st.x, y = st.y;
    const nx = x >= 0 ? AX[x].bins : 1, ny = y >= 0 ? AX[y].bins : 1;
    const wx = x >= 0 ? AX[x].width : 1, wy = y >= 0 ? AX[y].width : 1;
    const cellOf = agg ? agg.cellOf : new Int32Array(N);
    const counts = new Uint32Array(nx * ny * NL);
    const conds = [];
    AX.forEach((a, i) => {
      if (i !== x && i !== y && st.mode[i] >= 0) {
        conds.push([AXI[i], st.mode[i] * a.width, st.mode[i] * a.width + a.width - 1]);
      }
    });
    const byKey = Object.fromEntries(dims().map((d) => [d.key, d]));
    for (const k in st.brush) conds.push([byKey[k].arr, st.brush[k][0], st.brush[k][1]]);
    const xa = x >= 0 ? AXI[x] : null, ya = y >= 0 ? AXI[y] : null;
    const nc = conds.length;
    outer: for (let i = 0; i < N; i++) {
      for (let c = 0; c < nc; c++) {
        const v = conds[c][0][i];
        if (v < conds[c][1] || v > conds[c][2]) { cellOf[i] = -1; continue outer; }
      }
      const cell = (ya ? ((ya[i] / wy) | 0) * nx : 0) + (xa ? (xa[i] / wx) | 0 : 0);
      cellOf[i] = cell;
      counts[cell * NL + LAB[i]]++;
    }
    agg = {nx, ny, counts, cellOf, q: {}};
  }

  // per group (group(i) in 0..ng-1, or -1 to leave run i out) the codes of metric j at the
  // quantiles ps (nearest rank); -1 where the group has no value
  function groupQuantiles(j, ng, group, ps) {
    const code = MC[j];
    const off = new Uint32Array(ng + 1);
    for (let i = 0; i < N; i++) {
      const g = group(i);
      if (g >= 0 && code[i] !== 0) off[g + 1]++;
    }
    for (let g = 0; g < ng; g++) off[g + 1] += off[g];
    const vals = new code.constructor(off[ng]);
    const pos = off.slice(0, ng);
    for (let i = 0; i < N; i++) {
      const g = group(i);
      if (g >= 0 && code[i] !== 0) vals[pos[g]++] = code[i];
    }
    const out = new Int32Array(ng * ps.length).fill(-1);
    for (let g = 0; g < ng; g++) {
      const n = off[g + 1] - off[g];
      if (!n) continue;
      const sub = vals.subarray(off[g], off[g + 1]).sort();
      ps.forEach((p, k) => { out[g * ps.length + k] = sub[Math.round(p * (n - 1))]; });
    }
    return out;
  }
  const QS = [0.1, 0.5, 0.9];
  function cellQuantiles(j) {
    if (!agg.q[j]) {
      const cellOf = agg.cellOf;
      agg.q[j] = groupQuantiles(j, agg.nx * agg.ny, (i) => cellOf[i], QS);
    }
    return agg.q[j];
  }
  function cellCounts(cell) { return agg.counts.subarray(cell * NL, cell * NL + NL); }

  // ------------------------------------------------------------------ page skeleton
  const ui = {};
  function skeleton() {
    const body = document.body;
    const head = h("header", {}, body);
    h("h1", {}, head, META.name);
    const axesText = AX.map((a) => `${a.name} (${a.values.length})`).join(" × ") || "one run";
    h("div", {class: "sub"}, head, `${N.toLocaleString("en")} run${N === 1 ? "" : "s"} × ` +
      `${META.steps} steps · ${axesText} · ${META.generator}`);
    const chips = h("div", {class: "chips", id: "label-totals"}, head);
    LABELS.forEach((l, k) => {
      const n = META.label_totals[k];
      if (!n) return;
      const c = h("span", {class: "chip", "data-label": l, "data-count": String(n)}, chips);
      h("span", {class: "sw", style: `background:${COLORS[k]}`}, c);
      h("span", {}, c, `${l} ${n.toLocaleString("en")} (${(100 * n / N).toFixed(1)}%)`);
    });
    ui.error = h("div", {id: "error", role: "alert"}, body);
    const main = h("main", {}, body);
    ui.controls = h("section", {id: "controls", "aria-label": "map settings"}, main);
    const mp = h("section", {id: "map-panel"}, main);
    ui.mapTitle = h("h2", {}, mp, "Map");
    ui.map = s("svg", {id: "map", role: "group",
      "aria-label": "map: arrow keys move between cells, Enter shows a cell's runs"}, mp);
    ui.legend = h("div", {class: "legend", id: "legend"}, mp);
    ui.mapNote = h("p", {class: "note"}, mp);
    const cp = h("section", {id: "curve-panel"}, main);
    ui.curveTitle = h("h2", {}, cp, "Runs of a cell");
    ui.curves = s("svg", {id: "curves", "data-run-ids": "[]", "aria-live": "polite"}, cp);
    ui.curveNote = h("p", {class: "note"}, cp);
    ui.table = h("div", {class: "tablewrap", id: "runs-table"}, cp);
    const pp = h("section", {id: "pc-panel"}, main);
    const pt = h("h2", {}, pp, "All axes: drag along an axis to brush, click it to clear ");
    const clear = h("button", {id: "clear-brush", type: "button"}, pt, "clear brushes");
    clear.addEventListener("click", () => { st.brush = {}; refresh(); });
    ui.pcScroll = h("div", {id: "pc-scroll"}, pp);
    ui.pcWrap = h("div", {id: "pc-wrap"}, ui.pcScroll);
    ui.pcCanvas = h("canvas", {id: "pc-canvas"}, ui.pcWrap);
    ui.pc = s("svg", {id: "pc"}, ui.pcWrap);
    ui.pcNote = h("p", {class: "note"}, pp);
    ui.info = h("section", {id: "info"}, main);
    ui.tip = h("div", {id: "tip"}, body);
  }

  function option(sel, value, text, selected) {
    const o = h("option", {value: String(value)}, sel, text);
    if (selected) o.selected = true;
    return o;
  }
  function controls() {
    const c = ui.controls;
    c.textContent = "";
    const lx = h("label", {class: "ctl"}, c, "x ");
    const sx = h("select", {id: "x-axis"}, lx);
    AX.forEach((a, i) => option(sx, a.name, a.name, i === st.x));
    const ly = h("label", {class: "ctl"}, c, "y ");
    const sy = h("select", {id: "y-axis"}, ly);
    option(sy, "", "(none)", st.y < 0);
    AX.forEach((a, i) => option(sy, a.name, a.name, i === st.y));
    const lc = h("label", {class: "ctl"}, c, "colour ");
    const sc = h("select", {id: "color"}, lc);
    option(sc, "label", "majority label", st.color === "label");
    LABELS.forEach((l, k) => option(sc, "p" + k, `P(${l})`, st.color === "p" + k));
    MET.forEach((m, j) => option(sc, "m" + j, `${m.name} (median)`, st.color === "m" + j));
    const byName = (v) => AX.findIndex((a) => a.name === v);
    sx.addEventListener("change", () => {
      const nx = byName(sx.value);
      if (nx === st.y) st.y = st.x;
      st.x = nx;
      axesChanged();
    });
    sy.addEventListener("change", () => {
      const ny = sy.value === "" ? -1 : byName(sy.value);
      if (ny === st.x) {
        const other = st.y >= 0 ? st.y : AX.findIndex((a, i) => i !== ny);
        if (other < 0) { sy.value = ""; return; }  // a one-axis sweep: the map's x stays
        st.x = other;
      }
      st.y = ny;
      axesChanged();
    });
    sc.addEventListener("change", () => { st.color = sc.value; recolor(); });
    const others = h("div", {class: "others"}, c);
    AX.forEach((a, i) => {
      if (i === st.x || i === st.y) return;
      const w = h("span", {class: "other", "data-axis": a.name}, others);
      h("b", {}, w, a.name);
      const m = h("select", {"aria-label": `${a.name}: pool or slice`,
        id: `mode-${a.name}`}, w);
      option(m, "pool", "pooled", st.mode[i] < 0);
      option(m, "slice", "slice at", st.mode[i] >= 0);
      const r = h("input", {type: "range", min: "0", max: String(a.bins - 1), step: "1",
        value: String(Math.max(st.mode[i], 0)), "aria-label": `${a.name} value`,
        id: `slice-${a.name}`}, w);
      r.disabled = st.mode[i] < 0;
      const v = h("span", {class: "val"}, w,
        st.mode[i] >= 0 ? binText(i, st.mode[i]) : `all ${a.values.length}`);
      m.addEventListener("change", () => {
        st.mode[i] = m.value === "slice" ? +r.value : -1;
        r.disabled = st.mode[i] < 0;
        v.textContent = st.mode[i] >= 0 ? binText(i, st.mode[i]) : `all ${a.values.length}`;
        refresh();
      });
      r.addEventListener("input", () => {
        if (st.mode[i] < 0) return;
        st.mode[i] = +r.value;
        v.textContent = binText(i, st.mode[i]);
        refresh();
      });
    });
  }

  function axesChanged() {
    st.sel = null;
    st.focus = [0, 0];
    controls();
    aggregate();
    buildMap();
    showCell();
  }
  function refresh() {  // slices or brushes changed: same cells, new counts
    aggregate();
    recolor();
    showCell();
    drawPC();
  }

  // ------------------------------------------------------------------ map
  const mapG = {};
  function buildMap() {
    const svg = ui.map;
    svg.textContent = "";
    const W = Math.max(ui.map.parentNode.clientWidth - 24, 260);
    const nx = agg.nx, ny = agg.ny;
    const ml = st.y >= 0 ? 70 : 14, mr = 10, mt = 8, mb = 46;
    const PW = W - ml - mr;
    let PH = ny === 1 ? 44 : Math.min(Math.max(ny * 20, 150), W < 520 ? 340 : 440);
    if (ny > 1 && ny * 2 > PH) PH = Math.min(ny * 2, 600);
    const H = PH + mt + mb;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("width", W);
    svg.setAttribute("height", H);
    const cw = PW / nx, ch = PH / ny;
    Object.assign(mapG, {W, H, ml, mt, PW, PH, cw, ch});
    const g = s("g", {"shape-rendering": "crispEdges"}, svg);
    mapG.cells = new Array(nx * ny);
    const names = [st.x >= 0 ? AX[st.x].name : null, st.y >= 0 ? AX[st.y].name : null];
    for (let cy = 0; cy < ny; cy++) {
      for (let cx = 0; cx < nx; cx++) {
        const cell = {};
        if (names[0] !== null) cell[names[0]] = binValue(st.x, cx);
        if (names[1] !== null) cell[names[1]] = binValue(st.y, cy);
        const r = s("rect", {class: "cell", x: ml + cx * cw, y: mt + (ny - 1 - cy) * ch,
          width: cw + 0.02, height: ch + 0.02, tabindex: "-1",
          "data-cell": JSON.stringify(cell), "data-cx": cx, "data-cy": cy}, g);
        mapG.cells[cy * nx + cx] = r;
      }
    }
    mapG.cells[st.focus[1] * nx + st.focus[0]].setAttribute("tabindex", "0");
    ariaLabel(st.focus[1] * nx + st.focus[0]);
    mapG.thr = s("g", {}, svg);
    mapG.focus = s("rect", {class: "focusring", visibility: "hidden"}, svg);
    mapG.sel = s("rect", {class: "sel", visibility: "hidden"}, svg);
    mapG.selIn = s("rect", {class: "sel-in", visibility: "hidden"}, svg);
    // ticks: a label every k-th bin, so labels never overlap
    const tk = (n, px, minPx) => Math.max(1, Math.ceil(n * minPx / px));
    if (st.x >= 0) {
      const k = tk(nx, PW, 58);
      for (let cx = 0; cx < nx; cx += k) {
        const x = ml + (cx + 0.5) * cw;
        s("line", {x1: x, x2: x, y1: mt + PH, y2: mt + PH + 4, stroke: "#56616b"}, svg);
        s("text", {class: "tick", x, y: mt + PH + 16, "text-anchor": "middle"}, svg,
          fmt(AX[st.x].values[cx * AX[st.x].width]));
      }
      s("text", {class: "axis-title", x: ml + PW / 2, y: H - 8, "text-anchor": "middle"}, svg,
        AX[st.x].name + (AX[st.x].width > 1 ? ` (bins of ${AX[st.x].width})` : ""));
    }
    if (st.y >= 0) {
      const k = tk(ny, PH, 16);
      for (let cy = 0; cy < ny; cy += k) {
        const y = mt + (ny - 1 - cy + 0.5) * ch;
        s("line", {x1: ml - 4, x2: ml, y1: y, y2: y, stroke: "#56616b"}, svg);
        s("text", {class: "tick", x: ml - 6, y: y + 4, "text-anchor": "end"}, svg,
          fmt(AX[st.y].values[cy * AX[st.y].width]));
      }
      s("text", {class: "axis-title", transform: `translate(13 ${mt + PH / 2}) rotate(-90)`,
        "text-anchor": "middle"}, svg,
      AX[st.y].name + (AX[st.y].width > 1 ? ` (bins of ${AX[st.y].width})` : ""));
    }
    recolor();
  }

  function cellText(cell) {
    const cx = cell % agg.nx, cy = Math.floor(cell / agg.nx);
    const parts = [];
    if (st.x >= 0) parts.push(`${AX[st.x].name} = ${binText(st.x, cx)}`);
    if (st.y >= 0) parts.push(`${AX[st.y].name} = ${binText(st.y, cy)}`);
    return parts.join(", ") || "all runs";
  }
  function colorOf(cell) {  // [fill, text for the legend/tip]
    const c = cellCounts(cell);
    let n = 0, best = -1;
    for (let k = 0; k < NL; k++) { n += c[k]; if (best < 0 || c[k] > c[best]) best = k; }
    if (!n) return EMPTY_COLOR;
    if (st.color === "label") return COLORS[best];
    if (st.color[0] === "p") {
      const k = +st.color.slice(1);
      return lerpColor("#F7F7F7", COLORS[k], c[k] / n);
    }
    const j = +st.color.slice(1);
    const med = cellQuantiles(j)[cell * 3 + 1];
    if (med < 0) return NAN_COLOR;
    if (med === MET[j].top) return INF_COLOR;
    if (med === 1) return "#000000";
    const [lo, hi] = mapG.range;
    return viridis(hi > lo ? (med - lo) / (hi - lo) : 0.5);
  }
  function recolor() {
    const nc = agg.nx * agg.ny;
    if (st.color[0] === "m") {  // colour limits: the finite medians of the cells drawn
      const j = +st.color.slice(1), q = cellQuantiles(j);
      let lo = Infinity, hi = -Infinity;
      for (let c = 0; c < nc; c++) {
        const m = q[c * 3 + 1];
        if (m > 1 && m < MET[j].top) { lo = Math.min(lo, m); hi = Math.max(hi, m); }
      }
      mapG.range = [lo, hi];
    }
    for (let c = 0; c < nc; c++) {
      const r = mapG.cells[c];
      r.setAttribute("fill", colorOf(c));
      const counts = {};
      cellCounts(c).forEach((v, k) => { if (v) counts[LABELS[k]] = v; });
      r.setAttribute("data-counts", JSON.stringify(counts));
    }
    legend();
    thresholds();
    placeSelection();
    const sliced = AX.map((a, i) => (i !== st.x && i !== st.y && st.mode[i] >= 0
      ? `${a.name} = ${binText(i, st.mode[i])}` : null)).filter(Boolean);
    const pooled = AX.filter((a, i) => i !== st.x && i !== st.y && st.mode[i] < 0)
      .map((a) => a.name);
    const nb = Object.keys(st.brush).length;
    let total = 0;
    for (let i = 0; i < agg.counts.length; i++) total += agg.counts[i];
    ui.map.setAttribute("data-total", String(total));
    ui.mapNote.textContent = `${total.toLocaleString("en")} of ${N.toLocaleString("en")} runs` +
      (sliced.length ? ` · sliced: ${sliced.join(", ")}` : "") +
      (pooled.length ? ` · pooled: ${pooled.join(", ")}` : "") +
      (nb ? ` · ${nb} brush${nb > 1 ? "es" : ""}` : "") +
      " · click a cell (or Tab to the map, arrows, Enter) to see its runs";
  }
  function legend() {
    const el = ui.legend;
    el.textContent = "";
    if (st.color === "label") {
      LABELS.forEach((l, k) => {
        if (!META.label_totals[k]) return;
        const c = h("span", {class: "chip"}, el);
        h("span", {class: "sw", style: `background:${COLORS[k]}`}, c);
        h("span", {}, c, l);
      });
      h("span", {class: "chip"}, el, "(majority of the cell's runs)");
    } else if (st.color[0] === "p") {
      const k = +st.color.slice(1);
      h("span", {}, el, "0");
      h("span", {class: "grad", style: `background:linear-gradient(90deg,#F7F7F7,${COLORS[k]})`},
        el);
      h("span", {}, el, `1 = P(${LABELS[k]}) in the cell`);
    } else {
      const j = +st.color.slice(1), [lo, hi] = mapG.range;
      const stops = VIRIDIS.map((c, i) => `${c} ${(100 * i / (VIRIDIS.length - 1)).toFixed(0)}%`);
      h("span", {}, el, Number.isFinite(lo) ? fmt(metricValue(j, lo)) : "–");
      h("span", {class: "grad", style: `background:linear-gradient(90deg,${stops.join(",")})`},
        el);
      h("span", {}, el, (Number.isFinite(hi) ? fmt(metricValue(j, hi)) : "–") +
        ` · median ${MET[j].name}${MET[j].log ? " (log scale)" : ""}`);
      for (const [col, t] of [[INF_COLOR, "inf"], [NAN_COLOR, "no value"]]) {
        const c = h("span", {class: "chip"}, el);
        h("span", {class: "sw", style: `background:${col}`}, c);
        h("span", {}, c, t);
      }
    }
  }

  // 2/lambda: the learning rate above which gradient descent overshoots along the sharpest
  // direction, lambda the median sharpness at initialization of each row's (column's) runs
  function thresholds() {
    const g = mapG.thr;
    g.textContent = "";
    const j = MET.findIndex((m) => m.name === "sharpness_init");
    const lr = AX.findIndex((a) => a.name === "learning_rate");
    if (j < 0 || lr < 0 || (lr !== st.x && lr !== st.y)) return;
    const alongX = lr === st.x;
    const nx = agg.nx, ny = agg.ny, cellOf = agg.cellOf;
    const nrow = alongX ? ny : nx;
    const q = groupQuantiles(j, nrow, alongX
      ? (i) => (cellOf[i] < 0 ? -1 : Math.floor(cellOf[i] / nx))
      : (i) => (cellOf[i] < 0 ? -1 : cellOf[i] % nx), [0.5]);
    const vals = AX[lr].values, w = AX[lr].width;
    let d = "";
    let prev = null;
    for (let r = 0; r < nrow; r++) {
      const lam = q[r] > 1 ? metricValue(j, q[r]) : NaN;
      const target = 2 / lam;
      let f = NaN;  // fractional index of 2/lambda among the lr values (log-linear in between)
      for (let i = 0; i + 1 < vals.length; i++) {
        const a = Math.log(vals[i]), b = Math.log(vals[i + 1]), t = Math.log(target);
        if ((t - a) * (t - b) <= 0 && a !== b) { f = i + (t - a) / (b - a); break; }
      }
      if (!(lam > 0) || Number.isNaN(f)) { prev = null; continue; }
      const pos = (f + 0.5) / w;  // in bins
      let seg;
      if (alongX) {
        const x = mapG.ml + pos * mapG.cw;
        const y0 = mapG.mt + (ny - 1 - r) * mapG.ch, y1 = y0 + mapG.ch;
        seg = prev ? `L${x},${y1}L${x},${y0}` : `M${x},${y1}L${x},${y0}`;
      } else {
        const y = mapG.mt + (ny - pos) * mapG.ch;
        const x0 = mapG.ml + r * mapG.cw, x1 = x0 + mapG.cw;
        seg = prev ? `L${x0},${y}L${x1},${y}` : `M${x0},${y}L${x1},${y}`;
      }
      d += seg;
      prev = pos;
    }
    if (!d) return;
    s("path", {class: "thr", d}, g);
    s("path", {class: "thr-in", d}, g);
    const c = h("span", {class: "chip"}, ui.legend);
    const sv = s("svg", {width: 26, height: 10, style: "display:inline;width:26px"}, c);
    s("line", {x1: 0, x2: 26, y1: 5, y2: 5, stroke: "#111", "stroke-width": 1.6,
      "stroke-dasharray": "5 3"}, sv);
    h("span", {}, c, "2/λ (λ: median sharpness at init)");
  }

  function placeSelection() {
    for (const [r, at] of [[mapG.sel, st.sel], [mapG.selIn, st.sel]]) {
      if (!at) { r.setAttribute("visibility", "hidden"); continue; }
      r.setAttribute("visibility", "visible");
      r.setAttribute("x", mapG.ml + at[0] * mapG.cw);
      r.setAttribute("y", mapG.mt + (agg.ny - 1 - at[1]) * mapG.ch);
      r.setAttribute("width", mapG.cw);
      r.setAttribute("height", mapG.ch);
    }
  }
  function focusCell(cx, cy) {
    const old = mapG.cells[st.focus[1] * agg.nx + st.focus[0]];
    if (old) old.setAttribute("tabindex", "-1");
    st.focus = [cx, cy];
    const r = mapG.cells[cy * agg.nx + cx];
    r.setAttribute("tabindex", "0");
    ariaLabel(cy * agg.nx + cx);
    r.focus();
  }
  function ariaLabel(cell) {  // for screen readers, on the one cell that can take focus
    const c = cellCounts(cell);
    const counts = LABELS.map((l, k) => (c[k] ? `${l} ${c[k]}` : null)).filter(Boolean);
    mapG.cells[cell].setAttribute("aria-label",
      `${cellText(cell)}: ${counts.join(", ") || "no runs"}`);
  }
  function select(cx, cy) {
    st.sel = [cx, cy];
    placeSelection();
    showCell();
  }
  function mapEvents() {
    const svg = ui.map;
    const target = (ev) => (ev.target.classList && ev.target.classList.contains("cell")
      ? ev.target : null);
    svg.addEventListener("click", (ev) => {
      const r = target(ev);
      if (!r) return;
      focusCell(+r.dataset.cx, +r.dataset.cy);
      select(+r.dataset.cx, +r.dataset.cy);
    });
    svg.addEventListener("keydown", (ev) => {
      const r = target(ev);
      if (!r) return;
      let [cx, cy] = [+r.dataset.cx, +r.dataset.cy];
      const moves = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1]};
      if (moves[ev.key]) {
        cx = Math.min(Math.max(cx + moves[ev.key][0], 0), agg.nx - 1);
        cy = Math.min(Math.max(cy + moves[ev.key][1], 0), agg.ny - 1);
        focusCell(cx, cy);
        ev.preventDefault();
      } else if (ev.key === "Enter" || ev.key === " ") {
        select(cx, cy);
        ev.preventDefault();
      }
    });
    svg.addEventListener("focusin", (ev) => {
      const r = target(ev);
      if (!r) return;
      for (const k of ["x", "y", "width", "height"]) {
        mapG.focus.setAttribute(k, r.getAttribute(k));
      }
      mapG.focus.setAttribute("visibility", "visible");
    });
    svg.addEventListener("focusout", () => mapG.focus.setAttribute("visibility", "hidden"));
    svg.addEventListener("pointermove", (ev) => {
      const r = target(ev);
      if (!r) { ui.tip.style.display = "none"; return; }
      tip(+r.dataset.cy * agg.nx + +r.dataset.cx, ev.clientX, ev.clientY);
    });
    svg.addEventListener("pointerleave", () => { ui.tip.style.display = "none"; });
  }
  function tip(cell, px, py) {
    const t = ui.tip;
    t.textContent = "";
    h("b", {}, t, cellText(cell));
    const c = cellCounts(cell);
    let n = 0;
    c.forEach((v) => { n += v; });
    h("div", {}, t, `${n.toLocaleString("en")} run${n === 1 ? "" : "s"}`);
    LABELS.forEach((l, k) => {
      if (!c[k]) return;
      const row = h("div", {class: "chip"}, t);
      h("span", {class: "sw", style: `background:${COLORS[k]}`}, row);
      h("span", {}, row, `${l}: ${c[k]} (${(100 * c[k] / n).toFixed(0)}%)`);
    });
    if (st.color[0] === "m" && n) {
      const j = +st.color.slice(1), q = cellQuantiles(j);
      const v = QS.map((p, k) => (q[cell * 3 + k] < 0 ? "–" : fmt(metricValue(j, q[cell * 3 + k]))));
      h("div", {}, t, `${MET[j].name}: median ${v[1]} (10%: ${v[0]}, 90%: ${v[2]})`);
    }
    t.style.display = "block";
    const bw = t.offsetWidth, bh = t.offsetHeight;
    t.style.left = Math.min(px + 14, window.innerWidth - bw - 6) + "px";
    t.style.top = (py + 14 + bh > window.innerHeight ? py - bh - 10 : py + 14) + "px";
  }

  // ------------------------------------------------------------------ curves of a cell
  function showCell() {
    const svg = ui.curves;
    svg.textContent = "";
    ui.table.textContent = "";
    const W = Math.max(ui.curves.parentNode.clientWidth - 24, 260);
    const H = Math.round(Math.min(Math.max(W * 0.58, 220), 360));
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("width", W);
    svg.setAttribute("height", H);
    if (!st.sel) {
      svg.setAttribute("data-run-ids", "[]");
      svg.removeAttribute("data-cell");
      ui.curveTitle.textContent = "Runs of a cell";
      s("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "tick"}, svg,
        "click a map cell to see its loss curves and runs");
      ui.curveNote.textContent = "";
      return;
    }
    const cell = st.sel[1] * agg.nx + st.sel[0];
    svg.setAttribute("data-cell", mapG.cells[cell].getAttribute("data-cell"));
    const members = [];
    for (let k = 0; k < NS; k++) if (agg.cellOf[SROW[k]] === cell) members.push(k);
    let drawn = members;
    if (members.length > MAX_DRAWN) {
      const step = members.length / MAX_DRAWN;
      drawn = Array.from({length: MAX_DRAWN}, (_, i) => members[Math.floor(i * step)]);
    }
    const c = cellCounts(cell);
    let n = 0;
    c.forEach((v) => { n += v; });
    const weight = sampleWeights(cell, members, n);
    ui.curveTitle.textContent = cellText(cell);
    svg.setAttribute("data-run-ids", JSON.stringify(drawn.map((k) => SID[k])));
    const sc = META.sample.curve_log10;
    const lg = (code) => sc.lo + (code - 1) / 65534 * (sc.hi - sc.lo);
    let lo = Infinity, hi = -Infinity;
    for (const k of members) {
      for (let p = 0; p < NP; p++) {
        const code = SCURVE[k * NP + p];
        if (code) { const v = lg(code); lo = Math.min(lo, v); hi = Math.max(hi, v); }
      }
    }
    const ml = 52, mr = 10, mt = 10, mb = 38, PW = W - ml - mr, PH = H - mt - mb;
    if (!drawn.length || !Number.isFinite(lo)) {
      s("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "tick"}, svg,
        n ? "no finite sampled curve in this cell" : "no runs in this cell");
    } else {
      if (hi - lo < 0.3) { lo -= 0.15; hi += 0.15; }
      const pad = (hi - lo) * 0.04;
      lo -= pad; hi += pad;
      const s0 = STEPS[0], s1 = STEPS[NP - 1] > s0 ? STEPS[NP - 1] : s0 + 1;
      const X = (st_) => ml + (st_ - s0) / (s1 - s0) * PW;
      const Y = (v) => mt + (hi - v) / (hi - lo) * PH;
      // decades, 1-2-5 when the curves span less than two, and every 1..9 when they span
      // less than one (1-2-5 may leave a single label, and no scale to read)
      let yt = [];
      for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
        const m = hi - lo < 1 ? [1, 2, 3, 4, 5, 6, 7, 8, 9] : hi - lo < 2 ? [1, 2, 5] : [1];
        for (const f of m) { const v = e + Math.log10(f); if (v >= lo && v <= hi) yt.push(v); }
      }
      if (yt.length > 8) yt = yt.filter((v, i) => i % Math.ceil(yt.length / 8) === 0);
      for (const v of yt) {
        s("line", {class: "grid", x1: ml, x2: ml + PW, y1: Y(v), y2: Y(v)}, svg);
        s("text", {class: "tick", x: ml - 5, y: Y(v) + 4, "text-anchor": "end"}, svg,
          fmt(+Math.pow(10, v).toPrecision(3)));
      }
      for (const v of niceTicks(s0, s1, Math.max(3, Math.floor(PW / 80)))) {
        s("line", {class: "grid", x1: X(v), x2: X(v), y1: mt, y2: mt + PH}, svg);
        s("text", {class: "tick", x: X(v), y: mt + PH + 15, "text-anchor": "middle"}, svg,
          fmt(v));
      }
      s("rect", {x: ml, y: mt, width: PW, height: PH, fill: "none", stroke: "#9aa5b1"}, svg);
      s("text", {class: "axis-title", x: ml + PW / 2, y: H - 6, "text-anchor": "middle"}, svg,
        "step");
      s("text", {class: "axis-title", transform: `translate(13 ${mt + PH / 2}) rotate(-90)`,
        "text-anchor": "middle"}, svg, "loss (log)");
      const order = drawn.slice().sort((a, b) => LAB[SROW[a]] - LAB[SROW[b]]);
      for (const k of order) {
        let d = "", pen = false;
        for (let p = 0; p < NP; p++) {
          const code = SCURVE[k * NP + p];
          if (!code) { pen = false; continue; }
          d += `${pen ? "L" : "M"}${X(STEPS[p]).toFixed(1)},${Y(lg(code)).toFixed(1)}`;
          pen = true;
        }
        if (d) {
          s("path", {class: "run", d, stroke: COLORS[LAB[SROW[k]]],
            "data-run-id": String(SID[k])}, svg);
        }
      }
      // per step, the weighted (lower) median of the sampled curves: an estimate of the
      // median of all the cell's runs; curves that left the finite range drop out
      let d = "", pen = false;
      const med = [];
      for (let p = 0; p < NP; p++) {
        const v = [];
        members.forEach((k, m) => {
          const code = SCURVE[k * NP + p];
          if (code) v.push([lg(code), weight[m]]);
        });
        if (!v.length) { pen = false; med.push(null); continue; }
        v.sort((a, b) => a[0] - b[0]);
        let half = 0, cum = 0, q = 0;
        for (const [, w] of v) half += w / 2;
        while (q < v.length - 1 && cum + v[q][1] < half) cum += v[q++][1];
        med.push(+Math.pow(10, v[q][0]).toPrecision(6));
        d += `${pen ? "L" : "M"}${X(STEPS[p]).toFixed(1)},${Y(v[q][0]).toFixed(1)}`;
        pen = true;
      }
      if (d && members.length >= 3) {
        s("path", {class: "median", d, "data-median": JSON.stringify(med)}, svg);
      }
    }
    const parts = LABELS.map((l, k) => (c[k] ? `${l} ${c[k].toLocaleString("en")}` : null))
      .filter(Boolean);
    ui.curveNote.textContent = `${n.toLocaleString("en")} run${n === 1 ? "" : "s"} ` +
      `(${parts.join(", ") || "none"})` +
      `; ${drawn.length} curve${drawn.length === 1 ? "" : "s"} drawn` +
      (members.length < n ? ` of a sample of ${members.length}` : "") +
      (members.length >= 3 ? (members.length < n
        ? "; bold black: the per-step median of the cell's runs, estimated from the sample"
        : "; bold black: the per-step median") : "") +
      (NP < META.sample.n_recorded_steps ? `; ${NP} of ${META.sample.n_recorded_steps} ` +
        "recorded steps kept" : "");
    table(drawn);
  }
  // how many of the cell's runs each sampled curve stands for: the runs of its (bin cell,
  // label) group in the cell over the group's sampled runs in the cell (1 when every run of
  // the cell is sampled)
  function sampleWeights(cell, members, n) {
    if (members.length >= n) return members.map(() => 1);
    const group = (i) => {
      let f = 0;
      for (let a = 0; a < AX.length; a++) f = f * AX[a].bins + ((AXI[a][i] / AX[a].width) | 0);
      return f * NL + LAB[i];
    };
    const sampled = new Map(), runs = new Map();
    for (const k of members) {
      const g = group(SROW[k]);
      sampled.set(g, (sampled.get(g) || 0) + 1);
    }
    const cellOf = agg.cellOf;
    for (let i = 0; i < N; i++) {
      if (cellOf[i] !== cell) continue;
      const g = group(i);
      if (sampled.has(g)) runs.set(g, (runs.get(g) || 0) + 1);
    }
    return members.map((k) => {
      const g = group(SROW[k]);
      return runs.get(g) / sampled.get(g);
    });
  }
  function table(drawn) {
    if (!drawn.length) return;
    const t = h("table", {}, ui.table);
    const tr = h("tr", {}, h("thead", {}, t));
    const cols = ["run_id", ...AX.map((a) => a.name), "label", ...MET.map((m) => m.name)];
    cols.forEach((c) => h("th", {scope: "col"}, tr, c));
    const tb = h("tbody", {}, t);
    const rows = drawn.slice().sort((a, b) => SID[a] - SID[b]).slice(0, MAX_TABLE);
    for (const k of rows) {
      const r = h("tr", {}, tb);
      const i = SROW[k];
      h("td", {}, r, String(SID[k]));
      AX.forEach((a, ai) => h("td", {}, r, fmt(a.values[AXI[ai][i]])));
      const lc = h("td", {class: "lab"}, r);
      h("span", {class: "sw", style: `background:${COLORS[LAB[i]]};margin-right:4px`}, lc);
      lc.appendChild(document.createTextNode(LABELS[LAB[i]]));
      MET.forEach((m, j) => h("td", {}, r, fmt(SMET[k * MET.length + j])));
    }
  }

  // ------------------------------------------------------------------ parallel coordinates
  const pcG = {};
  function pcLines() {  // a fixed pseudo-random set of runs to draw (brushes filter every run)
    if (N <= PC_LINES) return Array.from({length: N}, (_, i) => i);
    let a = 12345;
    const rnd = () => {  // mulberry32
      a = (a + 0x6D2B79F5) | 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const set = new Set();
    while (set.size < PC_LINES) set.add(Math.floor(rnd() * N));
    return Array.from(set).sort((x, y) => x - y);
  }
  function buildPC() {
    const svg = ui.pc;
    svg.textContent = "";
    const DIMS = dims();
    // at least 78 px per axis: a narrow window scrolls the view sideways instead of
    // overlapping its axis names
    const W = Math.max(ui.pcScroll.clientWidth, 78 * DIMS.length + 60, 260);
    const ml = 30, mr = 44, mb = 30;
    const gap = DIMS.length > 1 ? (W - ml - mr) / (DIMS.length - 1) : 0;
    // names on two rows when they would run into each other (bold 13 px: ~7.5 px a letter)
    const widest = Math.max(...DIMS.map((d) => d.name.length)) * 7.5;
    const stagger = gap < 1.6 * widest;
    const mt = stagger ? 46 : 30, H = mt + 220, PH = H - mt - mb;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("width", W);
    svg.setAttribute("height", H);
    ui.pcWrap.style.height = H + "px";
    ui.pcWrap.style.width = W + "px";
    Object.assign(pcG, {W, H, mt, PH, DIMS, xs: DIMS.map((d, i) => (DIMS.length > 1
      ? ml + i * gap : W / 2))});
    const nanY = mt + PH + 12;
    pcG.nanY = nanY;
    pcG.brushRects = {};
    DIMS.forEach((d, i) => {
      const x = pcG.xs[i];
      const g = s("g", {"data-dim": d.name, class: "dim"}, svg);
      s("line", {class: "dimline", x1: x, x2: x, y1: mt, y2: mt + PH}, g);
      const anchor = i === 0 && DIMS.length > 1 ? "start"
        : i === DIMS.length - 1 && DIMS.length > 1 ? "end" : "middle";
      const title = s("text", {class: "axis-title", x: x + (anchor === "start" ? -8
        : anchor === "end" ? 8 : 0), y: stagger && i % 2 ? mt - 26 : mt - 10,
      "text-anchor": anchor}, g, d.name);
      const ends = d.axis !== undefined ? [0, d.max] : [2, d.max - 1];
      const name = (v) => fmt(d.axis !== undefined ? AX[d.axis].values[v]
        : metricValue(d.metric, v));
      // the last axis's values to its left, where they cannot run past the panel's edge
      const last = i === DIMS.length - 1 && DIMS.length > 1;
      const tick = (v, text) => s("text", {class: "tick", x: last ? x - 4 : x + 4,
        y: yOf(d, v) + 4, "text-anchor": last ? "end" : "start"}, g, text);
      // an axis's every value when they are 16 px apart or more (the middle values of a
      // name axis such as dtype cannot be guessed from its ends), else its two ends
      const every = d.axis !== undefined && d.max > 0 && PH / d.max >= 16;
      const shown = every ? Array.from({length: d.max + 1}, (_, v) => v) : [ends[1], ends[0]];
      for (const v of shown) tick(v, name(v));
      if (d.metric !== undefined) tick(0, "nan");
      pcG.brushRects[d.key] = s("rect", {class: "brush", x: x - 7, width: 14,
        visibility: "hidden"}, g);
      const hit = s("rect", {class: "hit", x: x - 14, y: mt - 4, width: 28,
        height: PH + (d.metric !== undefined ? 22 : 8), "data-dim": d.name}, g);
      brushEvents(hit, d);
    });
    drawPC();
  }
  function tOf(d, v) {  // a dimension's value (index or code) -> 0 (bottom) .. 1 (top), -1 NaN
    if (d.axis !== undefined) return d.max > 0 ? v / d.max : 0.5;
    if (v === 0) return -1;
    if (v === 1) return 0;  // -inf and +inf apart from the finite values
    if (v === d.max) return 1;
    return 0.04 + 0.92 * (v - 2) / Math.max(d.max - 3, 1);
  }
  function yOf(d, v) {
    const t = tOf(d, v);
    return t < 0 ? pcG.nanY : pcG.mt + (1 - t) * pcG.PH;
  }
  function rangeOf(d, y0, y1) {  // a dragged span of y -> the inclusive value range it covers
    const ya = Math.min(y0, y1), yb = Math.max(y0, y1);
    let lo = Infinity, hi = -Infinity;
    for (let v = 0; v <= d.max; v++) {
      const y = yOf(d, v);
      if (y >= ya && y <= yb) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
    return lo <= hi ? [lo, hi] : [1, 0];  // an empty span passes nothing
  }
  function brushEvents(hit, d) {
    let y0 = null;
    const pt = (ev) => {
      const p = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(ui.pc.getScreenCTM().inverse());
      return p.y;
    };
    hit.addEventListener("pointerdown", (ev) => {
      y0 = pt(ev);
      try { hit.setPointerCapture(ev.pointerId); } catch (e) { /* a synthetic pointer */ }
      ev.preventDefault();
    });
    hit.addEventListener("pointermove", (ev) => {
      if (y0 === null) return;
      const y1 = pt(ev), r = pcG.brushRects[d.key];
      r.setAttribute("visibility", "visible");
      r.setAttribute("y", Math.min(y0, y1));
      r.setAttribute("height", Math.abs(y1 - y0));
    });
    const end = (ev) => {
      if (y0 === null) return;
      const y1 = pt(ev);
      if (Math.abs(y1 - y0) < 3) delete st.brush[d.key];
      else st.brush[d.key] = rangeOf(d, y0, y1);
      y0 = null;
      refresh();
    };
    hit.addEventListener("pointerup", end);
    hit.addEventListener("pointercancel", () => { y0 = null; placeBrushes(); });
  }
  function placeBrushes() {
    for (const d of pcG.DIMS) {
      const r = pcG.brushRects[d.key], b = st.brush[d.key];
      if (!b) { r.setAttribute("visibility", "hidden"); continue; }
      const ya = yOf(d, b[0]), yb = yOf(d, Math.max(b[1], b[0]));
      const top = Math.min(ya, yb) - 3, bot = Math.max(ya, yb) + 3;
      r.setAttribute("visibility", "visible");
      r.setAttribute("y", top);
      r.setAttribute("height", Math.max(bot - top, 2));
    }
  }
  function drawPC() {
    if (!pcG.DIMS) return;
    placeBrushes();
    const cv = ui.pcCanvas, dpr = window.devicePixelRatio || 1;
    cv.width = Math.round(pcG.W * dpr);
    cv.height = Math.round(pcG.H * dpr);
    const ctx = cv.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, pcG.W, pcG.H);
    const lines = pcG.lines, DIMS = pcG.DIMS;
    const pass = (i) => agg.cellOf[i] >= 0;
    const path = (i) => {
      ctx.beginPath();
      DIMS.forEach((d, k) => {
        const y = yOf(d, d.arr[i]);
        if (k) ctx.lineTo(pcG.xs[k], y); else ctx.moveTo(pcG.xs[k], y);
      });
      ctx.stroke();
    };
    ctx.lineWidth = 1;
    ctx.strokeStyle = "rgba(120,130,140,0.10)";
    let shown = 0;
    for (const i of lines) if (!pass(i)) path(i);
    const alpha = Math.min(0.8, Math.max(0.12, 60 / Math.sqrt(lines.length + 1) / 4));
    ctx.globalAlpha = alpha;
    // the most common label first, so rarer ones stay visible on top
    const order = LABELS.map((l, k) => k).sort((a, b) => META.label_totals[b] - META.label_totals[a]);
    for (const k of order) {
      ctx.strokeStyle = COLORS[k];
      for (const i of lines) if (LAB[i] === k && pass(i)) { path(i); shown++; }
    }
    ctx.globalAlpha = 1;
    let total = 0;
    for (let i = 0; i < agg.counts.length; i++) total += agg.counts[i];
    ui.pcNote.textContent = `${lines.length.toLocaleString("en")} of ${N.toLocaleString("en")} ` +
      `runs drawn as lines (${shown.toLocaleString("en")} inside the brushes and the map's ` +
      `slices); the brushes filter all ${N.toLocaleString("en")} runs: ` +
      `${total.toLocaleString("en")} pass. Axes are drawn by value index, metrics on their ` +
      "quantization scale (log where they span more than a factor of 20).";
  }

  // ------------------------------------------------------------------ summary and config
  function info() {
    const el = ui.info;
    h("h2", {}, el, "Sweep");
    const dl = h("dl", {class: "kv"}, el);
    const row = (k, v) => { h("dt", {}, dl, k); h("dd", {}, dl, v); };
    row("runs", N.toLocaleString("en"));
    row("steps", `${META.steps} (${META.sample.n_recorded_steps} recorded)`);
    row("labels", LABELS.map((l, k) => `${l} ${META.label_totals[k].toLocaleString("en")}`)
      .join(", "));
    AX.forEach((a) => row(`axis ${a.name}`, `${a.values.length} value` +
      `${a.values.length === 1 ? "" : "s"}, ${fmt(a.values[0])} … ` +
      `${fmt(a.values[a.values.length - 1])}` + (a.width > 1 ? ` (map bins of ${a.width})` : "")));
    row("curves embedded", `${NS.toLocaleString("en")} sampled run${NS === 1 ? "" : "s"}: ` +
      `at most ${META.sample.per_label} per label in each cell of a grid of at most ` +
      `${META.sample.max_cells.toLocaleString("en")} cells; ${NP} steps each`);
    for (const k in META.env) row(k, String(META.env[k]));
    const v = META.versions || {};
    if (Object.keys(v).length) row("versions", Object.entries(v).map(([k, x]) => `${k} ${x}`)
      .join(", "));
    const det = h("details", {}, el);
    h("summary", {}, det, "config");
    h("pre", {id: "config"}, det, JSON.stringify(META.config, null, 2));
  }

  // ------------------------------------------------------------------ start
  function fail(e) {
    ui.error.style.display = "block";
    ui.error.textContent = "The explorer could not start: " + (e && e.message ? e.message : e);
    console.error(e);
  }
  async function start() {
    await Promise.all(Object.keys(META.blobs).map((k) => decode(k).then((a) => { D[k] = a; })));
    N = META.n_runs;
    LAB = D.label;
    AXI = AX.map((a) => D["axis:" + a.name]);
    MC = MET.map((m) => D["metric:" + m.name]);
    SROW = D["sample:row"]; SID = D["sample:id"]; SCURVE = D["sample:curve"];
    SMET = D["sample:metric"]; NS = SROW.length; STEPS = META.sample.steps; NP = STEPS.length;
    skeleton();
    controls();
    info();
    aggregate();
    buildMap();
    mapEvents();
    showCell();
    pcG.lines = pcLines();
    buildPC();
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => { buildMap(); showCell(); buildPC(); }, 150);
    });
    document.documentElement.setAttribute("data-ready", "1");
    window.tsReadyMs = performance.now();
  }
  start().catch((e) => {
    if (!ui.error) skeletonFallback();
    fail(e);
  });
  function skeletonFallback() {
    ui.error = h("div", {id: "error", role: "alert"}, document.body);
  }
})();
