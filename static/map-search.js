// Search over item ids, titles and what else each item is called (its FITS OBJECT, or a
// catalogue's object, name or target column: `also` in the chunks, when any item has one). The names chunks are fetched in order on first use; the
// search runs over whatever has arrived, and onChunk lets the page refresh its results.

import { fetchJSON } from './map-fetch.js';

/** A name as the search compares it: lower case, without spaces, `_` and `-` ("NGC 4414",
 * "ngc4414" and "NGC_4414" are one name), or just lower case when nothing else is left. */
export function squeeze(text) {
  const lower = String(text).toLowerCase();
  return lower.replace(/[\s_-]+/g, '') || lower;
}

export class NameSearch {
  constructor(meta, onChunk, onError) {
    this.chunkSize = meta.names_chunk;
    this.urls = meta.names ?? [];
    this.onChunk = onChunk;
    this.onError = onError;
    this.chunks = [];
    this.started = false;
    this.finished = false;
  }

  /** Starts fetching the chunks (once). */
  start() {
    if (this.started) return;
    this.started = true;
    this.loadAll();
  }

  async loadAll() {
    for (let c = 0; c < this.urls.length; c++) {
      try {
        const { ids, titles, also = [] } = await fetchJSON(this.urls[c]);
        // One key per item, its names squeezed; '\n' cannot occur in a squeezed query.
        const keys = ids.map((id, j) => [id, titles[j] ?? '', also[j] ?? ''].map(squeeze).join('\n'));
        this.chunks.push({ base: c * this.chunkSize, ids, titles, also, keys });
      } catch (e) {
        this.onError(`Search names failed to load: ${e.message}`);
        break;
      }
      this.onChunk();
    }
    this.finished = true;
    this.onChunk();
  }

  /** Up to `limit` items whose id, title or other name contains `query`, both squeezed. */
  find(query, limit) {
    const q = squeeze(query);
    const hits = [];
    for (const { base, ids, titles, also, keys } of this.chunks) {
      for (let j = 0; j < keys.length; j++) {
        if (keys[j].includes(q)) {
          hits.push({ index: base + j, id: String(ids[j]), title: String(titles[j] ?? ''), also: String(also[j] ?? '') });
          if (hits.length >= limit) return hits;
        }
      }
    }
    return hits;
  }
}
