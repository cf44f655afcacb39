// The k-d tree tiles of map.json: geometry and per-tile item spacing, the points a view draws
// (culled to the viewport, thinned when zoomed out), the lookup from a map index to its
// tile, lazily fetched tile JSON (ids, titles), and the atlas textures with a bounded fetch
// queue and an LRU limit.

import { fetchBlob, fetchJSON } from './map-fetch.js';

const MAX_FETCHES = 6;
const MAX_TEXTURES = 200;
// A thinned tile's weight (items per drawn point) falls in one of these classes, each drawn
// as one batch: 1 (whole tiles), then steps of LOD_STEP; the last one is open-ended.
const LOD_CLASSES = 6;
const LOD_STEP = 1.5;

export class Tiles {
  /**
   * @param meta map.json
   * @param localSpacing (i) => typical distance (layout units) between items around map index i
   * @param renderer a Renderer (createAtlas, deleteAtlas)
   * @param onLoad called when an atlas texture arrives
   * @param onError called with a message when an atlas fails to load
   */
  constructor(meta, localSpacing, renderer, onLoad, onError) {
    const tiles = meta.tiles;
    const n = tiles.length;
    this.thumb = meta.thumb;
    this.cols = meta.atlas_cols;
    this.boxes = new Float64Array(n * 4);
    this.start = new Uint32Array(n);
    this.count = new Uint32Array(n);
    // The first base[t] of a tile's items are in its atlas map/tiles/<t>.jpg, the rest in
    // map/tiles/<t>-new.jpg (items a rebuild added), whose first row is the main atlas's row
    // floor(base / cols): drawn over it, the two make one atlas of the tile.
    this.base = new Uint32Array(n);
    // Typical distance between a tile's items (layout units), which sizes its thumbnails: the
    // geometric mean of its items' local spacing, so a dense core outweighs a few strays.
    this.spacing = new Float64Array(n);
    tiles.forEach(([x0, y0, x1, y1, start, count, base = count], t) => {
      this.boxes.set([Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)], t * 4);
      this.start[t] = start;
      this.count[t] = count;
      this.base[t] = base;
      let logSum = 0;
      for (let i = start; i < start + count; i++) logSum += Math.log(localSpacing(i));
      this.spacing[t] = Math.exp(logSum / count);
    });
    // Degenerate bounds (all items on a line or at one spot) give no spacing: use the extent
    // per item, or 1.
    const [bx0, by0, bx1, by1] = meta.bounds;
    const fallback = Math.max(bx1 - bx0, by1 - by0) / Math.sqrt(Math.max(1, meta.items)) || 1;
    for (let t = 0; t < n; t++) if (!(this.spacing[t] > 0)) this.spacing[t] = fallback;
    const sorted = Float64Array.from(this.spacing).sort();
    this.medianSpacing = n ? sorted[n >> 1] : fallback;
    this.byStart = Uint32Array.from({ length: n }, (_, t) => t).sort((a, b) => this.start[a] - this.start[b]);
    // pointIndices: scratch space reused every frame, and the batches it fills.
    this.itemCount = meta.items;
    this.shuffled = null;
    this.visible = new Uint32Array(n);
    this.area = new Float64Array(n);
    this.keep = new Uint32Array(n);
    this.batchOf = new Uint8Array(n);
    this.indices = new Uint32Array(0);
    this.batches = Array.from({ length: LOD_CLASSES }, (_, k) => ({
      weight: k ? LOD_STEP ** (k - 0.5) : 1, // the class's middle weight (geometric)
      offset: 0,
      count: 0,
    }));

    this.renderer = renderer;
    this.onLoad = onLoad;
    this.onError = onError;
    this.textures = new Map(); // tile -> atlas, in least-recently-used-first order
    this.used = new Set(); // tiles drawn in the current frame
    this.loading = new Set();
    this.failed = new Set();
    this.queue = [];
    this.active = 0;
    this.info = new Map(); // tile -> Promise of {ids, titles}
  }

  get length() {
    return this.start.length;
  }

  /** The tile holding map index i, or -1. */
  tileOf(i) {
    let lo = 0;
    let hi = this.byStart.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.start[this.byStart[mid]] <= i) lo = mid;
      else hi = mid - 1;
    }
    const t = this.byStart[lo];
    return t !== undefined && i >= this.start[t] && i < this.start[t] + this.count[t] ? t : -1;
  }

  /**
   * The points to draw for a view: those of the tiles whose boxes meet the layout rectangle
   * [x0, x1] × [y0, y1], and if they are more than `budget`, only some of each tile, chosen
   * at random (shuffledOrder). Which tiles are thinned, and how far, is "water filling": each
   * keeps at most `density` points per CSS px² of its box on screen (`s` CSS px per layout
   * unit, boxes padded by `pointPx`) and at least one, with `density` the largest that fits
   * the budget. So the densest tiles, whose points overlap many times over, lose points first,
   * sparse tiles and outliers keep theirs, and every tile in view shows. A frame's cost is
   * bounded by the budget (plus one point per tile in view), whatever the archive's size.
   * Returns { drawn, total (the points of the tiles in view), indices: map indices
   * (Uint32Array, drawn long), batches: [{ weight, offset, count }] (slices of indices whose
   * points stand for `weight` items each) }, valid until the next call.
   */
  pointIndices(x0, y0, x1, y1, s, pointPx, budget) {
    const { boxes, start, count, visible, area, keep, batchOf, batches } = this;
    let m = 0;
    let total = 0;
    for (let t = 0; t < this.length; t++) {
      if (boxes[4 * t] > x1 || boxes[4 * t + 2] < x0 || boxes[4 * t + 1] > y1 || boxes[4 * t + 3] < y0) continue;
      visible[m++] = t;
      total += count[t];
    }
    let density = Infinity;
    if (total > budget) {
      let hi = 0;
      for (let k = 0; k < m; k++) {
        const t = visible[k];
        area[k] = ((boxes[4 * t + 2] - boxes[4 * t]) * s + pointPx) * ((boxes[4 * t + 3] - boxes[4 * t + 1]) * s + pointPx);
        hi = Math.max(hi, count[t] / area[k]);
      }
      // Bisection: the points kept grow with the density, from m (one a tile) to total.
      let lo = 0;
      for (let step = 0; step < 30; step++) {
        const mid = (lo + hi) / 2;
        let kept = 0;
        for (let k = 0; k < m; k++) kept += Math.min(count[visible[k]], Math.max(1, mid * area[k]));
        if (kept > budget) hi = mid;
        else lo = mid;
      }
      density = lo;
    }

    // How many points each tile keeps and its batch: 0 for whole tiles, else by weight.
    for (const b of batches) b.count = 0;
    for (let k = 0; k < m; k++) {
      const c = count[visible[k]];
      const kept = density === Infinity ? c : Math.min(c, Math.max(1, Math.floor(density * area[k])));
      keep[k] = kept;
      batchOf[k] = kept === c ? 0 : Math.min(LOD_CLASSES - 1, 1 + Math.floor(Math.log(c / kept) / Math.log(LOD_STEP)));
      batches[batchOf[k]].count += kept;
    }
    let drawn = 0;
    for (const b of batches) {
      b.offset = drawn;
      drawn += b.count;
      b.count = 0; // refilled below
    }
    if (this.indices.length < drawn) this.indices = new Uint32Array(drawn + (drawn >> 2));
    const { indices } = this;
    const order = density === Infinity ? null : this.shuffledOrder();
    for (let k = 0; k < m; k++) {
      const t = visible[k];
      const b = batches[batchOf[k]];
      let at = b.offset + b.count;
      b.count += keep[k];
      if (keep[k] === count[t]) for (let i = start[t], end = i + count[t]; i < end; i++) indices[at++] = i;
      else for (let i = start[t], end = i + keep[k]; i < end; i++) indices[at++] = order[i];
    }
    return { drawn, total, indices: indices.subarray(0, drawn), batches };
  }

  /**
   * Map indices with each tile's stretch in a fixed random order, built on first use, so that
   * the first k of a tile's are a uniform sample of it whatever order its items come in.
   */
  shuffledOrder() {
    if (!this.shuffled) {
      const order = new Uint32Array(this.itemCount);
      let seed = 0x9e3779b9; // xorshift32: the same sample on every visit
      for (let t = 0; t < this.length; t++) {
        const first = this.start[t];
        // Fisher–Yates, "inside-out": item j goes to a random place among the first j + 1.
        for (let j = 0; j < this.count[t]; j++) {
          seed ^= seed << 13;
          seed ^= seed >>> 17;
          seed ^= seed << 5;
          const r = Math.floor(((seed >>> 0) / 2 ** 32) * (j + 1));
          order[first + j] = order[first + r];
          order[first + r] = first + j;
        }
      }
      this.shuffled = order;
    }
    return this.shuffled;
  }

  /** A tile whose box holds the layout point (x, y), or -1. */
  tileAt(x, y) {
    const b = this.boxes;
    for (let t = 0; t < this.length; t++) {
      if (x >= b[4 * t] && x <= b[4 * t + 2] && y >= b[4 * t + 1] && y <= b[4 * t + 3]) return t;
    }
    return -1;
  }

  /** Promise of the tile's {ids, titles}; fetched once (again after a failure). */
  items(t) {
    let promise = this.info.get(t);
    if (!promise) {
      promise = fetchJSON(`map/tiles/${t}.json`);
      promise.catch(() => this.info.delete(t));
      this.info.set(t, promise);
    }
    return promise;
  }

  /** The tile's atlas if loaded (marking it used by this frame), else null. */
  atlas(t) {
    const atlas = this.textures.get(t);
    if (!atlas) return null;
    this.textures.delete(t);
    this.textures.set(t, atlas);
    this.used.add(t);
    return atlas;
  }

  /** Sets the tiles whose atlases the view wants, most wanted first; replaces older wishes. */
  want(tiles) {
    this.queue = tiles.filter((t) => !this.textures.has(t) && !this.loading.has(t) && !this.failed.has(t));
    this.pump();
  }

  /** Evicts least recently used textures not drawn by this frame beyond the limit. */
  endFrame() {
    for (const [t, atlas] of this.textures) {
      if (this.textures.size <= MAX_TEXTURES) break;
      if (this.used.has(t)) continue;
      this.renderer.deleteAtlas(atlas);
      this.textures.delete(t);
    }
    this.used.clear();
  }

  pump() {
    while (this.active < MAX_FETCHES && this.queue.length) {
      const t = this.queue.shift();
      this.active++;
      this.loading.add(t);
      this.load(t).finally(() => {
        this.active--;
        this.loading.delete(t);
        this.pump();
      });
    }
  }

  async load(t) {
    try {
      const bitmap = (name) => fetchBlob(`map/tiles/${name}.jpg`).then((blob) => createImageBitmap(blob));
      const added = this.base[t] < this.count[t];
      const parts = [{ image: await bitmap(t), y: 0 }];
      if (added) parts.push({ image: await bitmap(`${t}-new`), y: Math.floor(this.base[t] / this.cols) * this.thumb });
      const height = Math.max(...parts.map((p) => p.y + p.image.height));
      this.textures.set(t, this.renderer.createAtlas(parts, this.cols, this.thumb, height));
      for (const p of parts) p.image.close();
      this.onLoad();
    } catch (e) {
      this.failed.add(t);
      this.onError(`Thumbnails of tile ${t} failed to load: ${e.message}`);
    }
  }
}
