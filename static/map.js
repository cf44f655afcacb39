// Entry point of the archive map page (index.html). Loads map/map.json, the points and the
// default colouring, and draws them with WebGL2 (map-gl.js). Handles pan and zoom, hover
// tooltips, click-through to item pages, search, the #id=<id> hash, and the thumbnails shown
// per tile once zoomed in. Exposes window.simsiteMap for browser tests.

import { PointBudget, STILL_MS } from './map-budget.js';
import { paletteTexels, renderLegend } from './map-colour.js';
import { fetchJSON, fetchU16 } from './map-fetch.js';
import { MAX_GROW, Renderer } from './map-gl.js';
import { PointGrid } from './map-index.js';
import { NameSearch } from './map-search.js';
import { Tiles } from './map-tiles.js';

const THUMB_MIN_PX = 12; // a tile's thumbnails appear once they would be this big (CSS px)
const THUMB_MAX_CELLS = 2; // ...and grow to at most this many atlas cells
const THUMB_FILL = 0.9; // thumbnail side as a fraction of the tile's item spacing
const HOVER_PX = 8; // hover and click reach around a point
const FOCUS_THUMB_PX = 48; // thumbnail size when the map jumps to an item
const RING_PX = 30;
const RESULTS_MAX = 20;
// Most points a frame draws: beyond it, the densest tiles in view are thinned
// (Tiles.pointIndices). While the view moves, frames draw at most budget.moving points, which
// adapts to how fast this browser draws (map-budget.js); a view that stops is drawn once
// more with all budget.most (200,000).
const budget = new PointBudget();

const $ = (id) => document.getElementById(id);
const ui = {
  canvas: $('map'),
  search: $('search'),
  results: $('results'),
  colour: $('colour'),
  legend: $('legend'),
  tooltip: $('tooltip'),
  status: $('status'),
};

let resolveReady;
let rejectReady;
const simsiteMap = {
  /** Resolves after the first draw (with the #id= hash applied, if any); rejects if the map cannot start. */
  ready: new Promise((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  }),
  /** Points drawn by the last frame: all items when the whole map shows, unless there are more than 200,000 (or the view is moving on a slow renderer). */
  pointsDrawn: 0,
  /** Most points a frame drawn while the view moves may draw (see map-budget.js). */
  get pointBudget() {
    return budget.moving;
  },
  /** Tiles drawn as thumbnails by the last frame. */
  tilesDrawn: 0,
  /** Client (viewport) coordinates [x, y] of the point of map index i, or null. */
  screenOf,
  /** Promise of the id of the item at a map index. */
  idAt: async (i) => (await itemAt(i)).id,
  /** For benchmarks: times frames drawn synchronously (see timeFrames below). */
  timeFrames: (options) => timeFrames(options),
  /** For benchmarks: times the frames of a pan, one per animation frame (see timePan below). */
  timePan: (options) => timePan(options),
  errors: [],
};
window.simsiteMap = simsiteMap;
simsiteMap.ready.catch(() => {}); // a failed start is reported in #status

// Set once the data has loaded.
let map = null; // { meta, n, x0, y0, dx, dy, points, grid, tiles, renderer, search }
const view = { cx: 0, cy: 0, s: 1, fit: 1, min: 1, max: 1 }; // centre (layout units), CSS px per unit
let highlight = null; // { x, y, t }: the selected item, ringed
const colourValues = new Map(); // colour_by name -> Promise of its Uint16Array
let shownColour = null; // the colour_by name the points are drawn with

function setStatus(text, isError = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle('error', isError);
  ui.status.hidden = !text;
}

function report(message) {
  simsiteMap.errors.push(message);
  setStatus(message, true);
}

// Safety net: anything that escapes still reaches #status and simsiteMap.errors.
window.addEventListener('error', (e) => report(`Unexpected error: ${e.message}`));
window.addEventListener('unhandledrejection', (e) => report(`Unexpected error: ${e.reason?.message ?? e.reason}`));

// ---- geometry ---------------------------------------------------------------------------

function cssSize() {
  return { w: ui.canvas.clientWidth || 1, h: ui.canvas.clientHeight || 1 };
}

/** Layout coordinates of map index i (dequantised). */
function layoutOf(i) {
  const { points, x0, y0, dx, dy } = map;
  return [x0 + (points[2 * i] / 65535) * dx, y0 + (points[2 * i + 1] / 65535) * dy];
}

/** Layout -> canvas CSS pixels; y grows upward in layout units, downward on screen. */
function toCanvas(x, y) {
  const { w, h } = cssSize();
  return [w / 2 + (x - view.cx) * view.s, h / 2 - (y - view.cy) * view.s];
}

function toLayout(clientX, clientY) {
  const r = ui.canvas.getBoundingClientRect();
  return [view.cx + (clientX - r.left - r.width / 2) / view.s, view.cy - (clientY - r.top - r.height / 2) / view.s];
}

function screenOf(i) {
  if (!map || !(i >= 0 && i < map.n)) return null;
  const r = ui.canvas.getBoundingClientRect();
  const [sx, sy] = toCanvas(...layoutOf(i));
  return [r.left + sx, r.top + sy];
}

/** Side of thumbnails at the current zoom, in CSS px, for items `spacing` layout units apart. */
function thumbPx(spacing) {
  return Math.min(spacing * view.s * THUMB_FILL, map.tiles.thumb * THUMB_MAX_CELLS);
}

function pointSizePx() {
  const base = map.n > 200000 ? 1.5 : map.n > 20000 ? 2.5 : 3.5;
  return Math.min(8, Math.max(1, base + 0.75 * Math.log2(view.s / view.fit)));
}

function fitView() {
  const { w, h } = cssSize();
  const spanX = map.dx || map.dy || 1;
  const spanY = map.dy || map.dx || 1;
  view.fit = 0.95 * Math.min(w / spanX, h / spanY);
  view.s = view.fit;
  view.cx = map.x0 + map.dx / 2;
  view.cy = map.y0 + map.dy / 2;
  view.min = view.fit / 4;
  // Zooming further than 4 px per quantisation step shows nothing new.
  view.max = Math.max(view.fit * 4, (4 * 65535) / Math.max(spanX, spanY));
}

function zoomAt(clientX, clientY, factor) {
  const [x, y] = toLayout(clientX, clientY);
  const r = ui.canvas.getBoundingClientRect();
  view.s = Math.min(view.max, Math.max(view.min, view.s * factor));
  view.cx = x - (clientX - r.left - r.width / 2) / view.s;
  view.cy = y + (clientY - r.top - r.height / 2) / view.s;
  requestDraw();
}

function zoomAtCentre(factor) {
  const r = ui.canvas.getBoundingClientRect();
  zoomAt(r.left + r.width / 2, r.top + r.height / 2, factor);
}

function panBy(dxPx, dyPx) {
  view.cx -= dxPx / view.s;
  view.cy += dyPx / view.s;
  requestDraw();
}

/** Centres on a layout point, zooms in until its tile shows thumbnails, and rings it. */
function focusOn(x, y, t) {
  const spacing = t >= 0 ? map.tiles.spacing[t] : map.tiles.medianSpacing;
  if (spacing > 0) view.s = Math.min(view.max, Math.max(view.s, FOCUS_THUMB_PX / (spacing * THUMB_FILL)));
  view.cx = x;
  view.cy = y;
  highlight = { x, y, t };
  requestDraw();
}

// ---- drawing ----------------------------------------------------------------------------

let drawPending = false;
let asked = -Infinity; // when the pending frame was asked for (performance.now())
let drawnAt = -Infinity; // when the last frame was drawn
// A frame asked for this soon after the frame before was drawn follows it back to back.
const BACK_TO_BACK_MS = 50;
let still = false; // the next frame is the one drawn once the view stopped: the full budget
let settle = 0; // timer that draws that frame

function requestDraw() {
  if (drawPending || !map) return;
  drawPending = true;
  asked = performance.now();
  requestAnimationFrame((at) => draw(at));
}

/**
 * Draws a frame. `at` is its requestAnimationFrame time: the budget learns from the spacing
 * of such frames. A frame drawn without it (a benchmark's), or `full`, draws up to budget.most.
 */
function draw(at, full = false) {
  drawPending = false;
  full = full || still || at === undefined;
  still = false;
  clearTimeout(settle);
  const { renderer, tiles, x0, y0, dx, dy } = map;
  const { width: w, height: h, dpr } = renderer.resize();
  const { cx, cy, s } = view;
  const kx = (2 * s) / w;
  const ky = (2 * s) / h;
  const halfW = w / 2 / s;
  const halfH = h / 2 / s;
  const pointPx = pointSizePx();
  const reach = (pointPx * MAX_GROW) / 2 / s; // points reach this far beyond their tile's box
  const limit = full ? budget.most : budget.moving;
  const points = tiles.pointIndices(cx - halfW - reach, cy - halfH - reach, cx + halfW + reach, cy + halfH + reach, s, pointPx, limit);
  const frame = {
    scale: [dx * kx, dy * ky],
    offset: [(x0 - cx) * kx, (y0 - cy) * ky],
    pointSize: pointPx * dpr,
    points,
    quads: [],
    ring: null,
  };

  // Tiles whose thumbnails are big enough and that meet the viewport: draw the loaded ones,
  // ask for the others nearest the centre first.
  const wanted = [];
  for (let t = 0; t < tiles.length; t++) {
    const px = thumbPx(tiles.spacing[t]);
    if (px < THUMB_MIN_PX) continue;
    const margin = px / 2 / s; // thumbnails reach half their side beyond the tile's box
    const b = tiles.boxes.subarray(4 * t, 4 * t + 4);
    if (b[0] - margin > cx + halfW || b[2] + margin < cx - halfW) continue;
    if (b[1] - margin > cy + halfH || b[3] + margin < cy - halfH) continue;
    const atlas = tiles.atlas(t);
    if (atlas) {
      frame.quads.push({ atlas, start: tiles.start[t], count: tiles.count[t], half: [px / w, px / h] });
    } else {
      wanted.push({ t, d: Math.hypot((b[0] + b[2]) / 2 - cx, (b[1] + b[3]) / 2 - cy) });
    }
  }
  tiles.want(wanted.sort((a, b) => a.d - b.d).map((x) => x.t));

  if (highlight) {
    const [sx, sy] = toCanvas(highlight.x, highlight.y);
    const px = highlight.t >= 0 ? thumbPx(tiles.spacing[highlight.t]) : 0;
    const size = px >= THUMB_MIN_PX ? Math.max(RING_PX, 2 * px + 4) : RING_PX;
    frame.ring = { at: [(sx / w) * 2 - 1, 1 - (sy / h) * 2], size: size * dpr };
  }

  renderer.draw(frame);
  tiles.endFrame();
  simsiteMap.pointsDrawn = points.drawn;
  simsiteMap.tilesDrawn = frame.quads.length;
  const before = drawnAt;
  drawnAt = performance.now();
  if (!full) {
    budget.frame(at, points.drawn, points.drawn < points.total, asked - before < BACK_TO_BACK_MS);
    // Thinned further than a still view would be: once the view stops, draw it again.
    if (points.drawn < Math.min(points.total, budget.most)) {
      settle = setTimeout(() => {
        still = true;
        requestDraw();
      }, STILL_MS);
    }
  }
}

/**
 * For benchmarks (benches/map-gpu/): views the map at `zoom` times the whole-map scale,
 * centred on map index `at` (or on the whole map), lets thumbnail atlases load for
 * `settleMs`, then draws `frames` frames one after another, each read back (one pixel) so
 * that its time includes the GPU's work and not the display's refresh. Resolves to
 * { zoom, frames, points, tiles, mean_ms, median_ms, max_ms }.
 */
async function timeFrames({ zoom = 1, at = -1, frames = 20, settleMs = 0 } = {}) {
  viewWhole(zoom);
  if (at >= 0) [view.cx, view.cy] = layoutOf(at);
  draw();
  if (settleMs > 0) {
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    draw();
  }
  const gl = map.renderer.gl;
  const pixel = new Uint8Array(4);
  const times = [];
  for (let f = 0; f < frames; f++) {
    const t0 = performance.now();
    draw();
    gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel);
    times.push(performance.now() - t0);
  }
  return { zoom, frames, points: simsiteMap.pointsDrawn, tiles: simsiteMap.tilesDrawn, ...frameTimes(times) };
}

/** For the benchmarks: the whole map in view, at `zoom` times the scale that fits it. */
function viewWhole(zoom) {
  if (!map) throw new Error('the map has not loaded');
  fitView();
  view.s = Math.min(view.max, Math.max(view.min, view.fit * zoom));
}

/** For the benchmarks: { mean_ms, median_ms, max_ms } of frame times. */
function frameTimes(times) {
  return {
    mean_ms: times.reduce((a, b) => a + b, 0) / times.length,
    median_ms: [...times].sort((a, b) => a - b)[times.length >> 1],
    max_ms: Math.max(...times),
  };
}

/**
 * For benchmarks: pans the map across at `zoom` times the whole-map scale for `frames`
 * animation frames, one frame drawn in each as a drag draws them, and times the spacing of
 * those frames: what a user sees while moving the map. With `adaptive` false every frame
 * draws the full budget, as before the budget adapted. Resolves to { zoom, frames, adaptive,
 * points (drawn by the last frame), budget (the moving budget at the end), mean_ms,
 * median_ms, max_ms }.
 */
async function timePan({ zoom = 1, frames = 60, adaptive = true } = {}) {
  viewWhole(zoom);
  const { w } = cssSize();
  const step = (0.5 * w) / frames; // half a screen width, there and back
  const times = [];
  await new Promise((resolve) => {
    let last = null;
    const tick = (at) => {
      if (last !== null) times.push(at - last);
      last = at;
      if (times.length >= frames) return resolve();
      view.cx += ((times.length < frames / 2 ? 1 : -1) * step) / view.s;
      draw(at, !adaptive);
      asked = performance.now(); // as a drag asks for the next frame
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  return { zoom, frames, adaptive, points: simsiteMap.pointsDrawn, budget: budget.moving, ...frameTimes(times) };
}

// ---- items: hit test, tooltip, opening ------------------------------------------------

/** The map index under a client position, or -1. */
function hitTest(clientX, clientY) {
  const { x0, y0, dx, dy, grid, tiles } = map;
  const [x, y] = toLayout(clientX, clientY);
  const qx = dx ? ((x - x0) / dx) * 65535 : 0;
  const qy = dy ? ((y - y0) / dy) * 65535 : 0;
  // Where thumbnails are showing, reach over most of one.
  const typical = thumbPx(tiles.medianSpacing);
  const reach = typical >= THUMB_MIN_PX ? Math.max(HOVER_PX, typical / 2) : HOVER_PX;
  return grid.nearest(qx, qy, reach, (view.s * dx) / 65535, (view.s * dy) / 65535);
}

/** Promise of { id, title } of map index i (from its tile's JSON). */
async function itemAt(i) {
  if (!map) throw new Error('the map has not loaded');
  const t = map.tiles.tileOf(i);
  if (t < 0) throw new Error(`no tile holds map index ${i}`);
  const { ids, titles } = await map.tiles.items(t);
  const j = i - map.tiles.start[t];
  return { id: String(ids[j]), title: String(titles?.[j] ?? '') };
}

function openItem(i) {
  itemAt(i)
    .then(({ id }) => location.assign(new URL(`items/${encodeURIComponent(id)}/`, document.baseURI).href))
    .catch((e) => report(`Could not open the item: ${e.message}`));
}

let hovered = -1;
let tooltipAt = [0, 0];

function placeTooltip() {
  const [x, y] = tooltipAt;
  const tip = ui.tooltip;
  const left = x + 14 + tip.offsetWidth > window.innerWidth ? x - 14 - tip.offsetWidth : x + 14;
  const top = y + 14 + tip.offsetHeight > window.innerHeight ? y - 14 - tip.offsetHeight : y + 14;
  tip.style.left = `${Math.max(0, left)}px`;
  tip.style.top = `${Math.max(0, top)}px`;
}

function showTooltip(i, clientX, clientY) {
  tooltipAt = [clientX, clientY];
  if (i !== hovered) {
    hovered = i;
    const id = document.createElement('strong');
    id.textContent = '…';
    const title = document.createElement('span');
    ui.tooltip.replaceChildren(id, title);
    itemAt(i).then(
      (item) => {
        if (hovered !== i) return;
        id.textContent = item.id;
        title.textContent = item.title;
        placeTooltip();
      },
      (e) => report(`Could not load item details: ${e.message}`),
    );
  }
  ui.tooltip.hidden = false;
  placeTooltip();
}

function hideTooltip() {
  hovered = -1;
  ui.tooltip.hidden = true;
  ui.canvas.style.cursor = '';
}

let hoverAt = null; // latest pointer position to hit-test, one test per animation frame
let hoverPending = false;

function scheduleHover(clientX, clientY) {
  hoverAt = [clientX, clientY];
  if (hoverPending) return;
  hoverPending = true;
  requestAnimationFrame(() => {
    hoverPending = false;
    if (!hoverAt) return;
    const i = hitTest(...hoverAt);
    if (i < 0) return hideTooltip();
    ui.canvas.style.cursor = 'pointer';
    showTooltip(i, ...hoverAt);
  });
}

// ---- pointer, wheel and keys -------------------------------------------------------------

const pointers = new Map(); // pointerId -> last { x, y } of the pressed pointers
let press = null; // a single-pointer press that may become a click: { x, y, moved }

function bindInput() {
  const canvas = ui.canvas;
  canvas.addEventListener('pointerdown', (e) => {
    if (e.pointerType === 'mouse' && e.button !== 0) return;
    canvas.setPointerCapture(e.pointerId);
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    press = pointers.size === 1 ? { x: e.clientX, y: e.clientY, moved: false } : null;
    hideTooltip();
  });

  canvas.addEventListener('pointermove', (e) => {
    const p = pointers.get(e.pointerId);
    if (!p) return scheduleHover(e.clientX, e.clientY);
    if (pointers.size === 1) {
      panBy(e.clientX - p.x, e.clientY - p.y);
      if (press && Math.hypot(e.clientX - press.x, e.clientY - press.y) > 4) press.moved = true;
    } else if (pointers.size === 2) {
      // Pinch: follow the midpoint, scale by the change of finger distance.
      const [other] = [...pointers].filter(([id]) => id !== e.pointerId).map(([, q]) => q);
      const midX = (e.clientX + other.x) / 2;
      const midY = (e.clientY + other.y) / 2;
      panBy(midX - (p.x + other.x) / 2, midY - (p.y + other.y) / 2);
      const before = Math.hypot(p.x - other.x, p.y - other.y);
      const after = Math.hypot(e.clientX - other.x, e.clientY - other.y);
      if (before > 0 && after > 0) zoomAt(midX, midY, after / before);
    }
    p.x = e.clientX;
    p.y = e.clientY;
  });

  const release = (e) => {
    if (!pointers.delete(e.pointerId)) return;
    const click = e.type === 'pointerup' && press && !press.moved && pointers.size === 0;
    if (pointers.size === 0) press = null;
    if (click) {
      const i = hitTest(e.clientX, e.clientY);
      if (i >= 0) openItem(i);
    }
  };
  canvas.addEventListener('pointerup', release);
  canvas.addEventListener('pointercancel', release);
  canvas.addEventListener('pointerleave', () => {
    hoverAt = null;
    hideTooltip();
  });

  canvas.addEventListener(
    'wheel',
    (e) => {
      e.preventDefault();
      const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? cssSize().h : 1;
      zoomAt(e.clientX, e.clientY, Math.exp(-e.deltaY * unit * 0.002));
      hideTooltip();
    },
    { passive: false },
  );

  window.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest?.('input, select, textarea, #results')) return;
    const { w, h } = cssSize();
    switch (e.key) {
      case '+': case '=': zoomAtCentre(1.5); break;
      case '-': case '_': zoomAtCentre(1 / 1.5); break;
      case '0': fitView(); requestDraw(); break;
      case 'ArrowLeft': panBy(w / 5, 0); break;
      case 'ArrowRight': panBy(-w / 5, 0); break;
      case 'ArrowUp': panBy(0, h / 5); break;
      case 'ArrowDown': panBy(0, -h / 5); break;
      default: return;
    }
    e.preventDefault();
  });

  window.addEventListener('resize', requestDraw);
  canvas.addEventListener('webglcontextlost', () => report('The graphics context was lost; reload the page.'));
}

// ---- search and the #id= hash ---------------------------------------------------------------

function note(text) {
  const li = document.createElement('li');
  li.className = 'note';
  li.textContent = text;
  return li;
}

function runSearch() {
  const { search } = map;
  const query = ui.search.value.trim();
  if (!query) return ui.results.replaceChildren();
  const rows = search.find(query, RESULTS_MAX).map(({ index, id, title, also }) => {
    const a = document.createElement('a');
    a.href = `#id=${encodeURIComponent(id)}`;
    a.dataset.index = index;
    a.dataset.id = id;
    const name = document.createElement('span');
    name.textContent = title || id;
    const small = document.createElement('small');
    small.textContent = also ? `${also} · ${id}` : id;
    a.append(name, small);
    const li = document.createElement('li');
    li.append(a);
    return li;
  });
  if (!search.finished) rows.push(note(`Loading names… ${search.chunks.length} of ${search.urls.length}`));
  else if (!rows.length) rows.push(note('No matches'));
  ui.results.replaceChildren(...rows);
}

function selectResult(i, id) {
  focusOn(...layoutOf(i), map.tiles.tileOf(i));
  const hash = `#id=${encodeURIComponent(id)}`;
  if (location.hash !== hash) history.pushState(null, '', hash);
}

function bindSearch() {
  let timer = 0;
  ui.search.addEventListener('input', () => {
    map.search.start();
    clearTimeout(timer);
    timer = setTimeout(runSearch, 150);
  });
  const links = () => [...ui.results.querySelectorAll('a')];
  ui.search.addEventListener('keydown', (e) => {
    const first = links()[0];
    if (!first || (e.key !== 'Enter' && e.key !== 'ArrowDown')) return;
    e.preventDefault();
    if (e.key === 'Enter') first.click();
    else first.focus();
  });
  ui.results.addEventListener('keydown', (e) => {
    const all = links();
    const k = all.indexOf(document.activeElement);
    if (k < 0 || (e.key !== 'ArrowDown' && e.key !== 'ArrowUp')) return;
    e.preventDefault();
    const next = e.key === 'ArrowDown' ? all[k + 1] : all[k - 1];
    (next ?? (e.key === 'ArrowUp' ? ui.search : all[k])).focus();
  });
  ui.results.addEventListener('click', (e) => {
    const a = e.target.closest('a');
    if (!a) return;
    e.preventDefault();
    selectResult(Number(a.dataset.index), a.dataset.id);
  });
}

/** Shows the item named by #id=<id>, located through api/items/<id>.json. */
async function applyHash() {
  const id = new URLSearchParams(location.hash.slice(1)).get('id');
  if (!id) return;
  try {
    const item = await fetchJSON(`api/items/${encodeURIComponent(id)}.json`);
    const x = Number(item.x);
    const y = Number(item.y);
    if (!Number.isFinite(x) || !Number.isFinite(y)) throw new Error('it has no map position');
    focusOn(x, y, map.tiles.tileAt(x, y));
  } catch (e) {
    report(`Could not show item ${id}: ${e.message}`);
  }
}

// ---- colouring ---------------------------------------------------------------------------

function loadColour(entry) {
  let values = colourValues.get(entry.name);
  if (!values) {
    values = fetchU16(entry.file, map.n);
    values.catch(() => colourValues.delete(entry.name));
    colourValues.set(entry.name, values);
  }
  return values;
}

async function selectColour(name) {
  const entry = map.meta.colour_by.find((c) => c.name === name);
  if (!entry) return;
  ui.colour.disabled = true;
  try {
    const values = await loadColour(entry);
    map.renderer.setColours(values, entry.kind, paletteTexels(entry.kind));
    renderLegend(ui.legend, entry, values.includes(0xffff));
    shownColour = name;
    requestDraw();
  } catch (e) {
    report(`Colouring by ${name} failed: ${e.message}`);
    if (shownColour) ui.colour.value = shownColour;
  } finally {
    ui.colour.disabled = false;
  }
}

function bindColours() {
  const entries = map.meta.colour_by;
  for (const { name } of entries) ui.colour.append(new Option(name, name));
  (ui.colour.closest('label') ?? ui.colour).hidden = entries.length === 0;
  ui.legend.hidden = true;
  ui.colour.addEventListener('change', () => selectColour(ui.colour.value));
  const initial = entries.find((c) => c.name === 'cluster') ?? entries[0];
  if (!initial) return null;
  ui.colour.value = initial.name;
  loadColour(initial).catch(() => {}); // in parallel with the points; selectColour reports failures
  return initial.name;
}

// ---- start -----------------------------------------------------------------------------

async function start() {
  setStatus('Loading the map…');
  const meta = await fetchJSON('map/map.json');
  const n = meta.items;
  if (!Number.isInteger(n) || n < 0 || meta.bounds?.length !== 4 || !Array.isArray(meta.tiles)) {
    throw new Error('map/map.json is malformed');
  }
  // The points download while WebGL starts up, which can take a while.
  const pointsLoaded = fetchU16('map/points.u16', 2 * n);
  pointsLoaded.catch(() => {}); // awaited below
  const renderer = new Renderer(ui.canvas);
  meta.colour_by ??= [];
  const [x0, y0, x1, y1] = meta.bounds;
  map = { meta, n, x0, y0, dx: x1 - x0, dy: y1 - y0, renderer };
  const initialColour = bindColours();

  setStatus(`Loading ${n.toLocaleString()} points…`);
  map.points = await pointsLoaded;
  renderer.setPoints(map.points);
  map.grid = new PointGrid(map.points);
  const cellArea = (map.dx / map.grid.g) * (map.dy / map.grid.g);
  const localSpacing = (i) => Math.sqrt(cellArea / map.grid.population(i));
  map.tiles = new Tiles(meta, localSpacing, renderer, requestDraw, report);
  map.search = new NameSearch(meta, runSearch, report);
  fitView();
  if (initialColour) await selectColour(initialColour);
  bindInput();
  bindSearch();
  window.addEventListener('hashchange', applyHash);

  draw();
  await applyHash();
  if (drawPending) draw(); // the hash moved the view: ready means it is drawn
  if (!simsiteMap.errors.length) setStatus(`${n.toLocaleString()} items · drag to pan, scroll or +/− to zoom`);
  resolveReady();
}

start().catch((e) => {
  document.body.classList.add('map-failed'); // hides the controls (site.css)
  report(e.message);
  rejectReady(e);
});
