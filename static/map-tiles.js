// The k-d tree tiles of map.json: geometry and per-tile item spacing, the lookup from a map
// index to its tile, lazily fetched tile JSON (ids, titles), and the atlas textures with a
// bounded fetch queue and an LRU limit.

import { fetchBlob, fetchJSON } from './map-fetch.js';

const MAX_FETCHES = 6;
const MAX_TEXTURES = 200;

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
    // Typical distance between a tile's items (layout units), which sizes its thumbnails: the
    // geometric mean of its items' local spacing, so a dense core outweighs a few strays.
    this.spacing = new Float64Array(n);
    tiles.forEach(([x0, y0, x1, y1, start, count], t) => {
      this.boxes.set([Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)], t * 4);
      this.start[t] = start;
      this.count[t] = count;
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
      const bitmap = await createImageBitmap(await fetchBlob(`map/tiles/${t}.jpg`));
      this.textures.set(t, this.renderer.createAtlas(bitmap, this.cols, this.thumb));
      bitmap.close();
      this.onLoad();
    } catch (e) {
      this.failed.add(t);
      this.onError(`Thumbnails of tile ${t} failed to load: ${e.message}`);
    }
  }
}
