// Uniform grid over the quantised point positions (0..65535 on both axes), for hover and
// click hit tests. Built in O(N) with a counting sort, so 1M points take a few tens of ms.

export class PointGrid {
  /** @param {Uint16Array} points interleaved x, y per item */
  constructor(points) {
    const n = points.length >> 1;
    // About four points per cell on average; the grid side is capped to bound memory.
    const g = Math.max(1, Math.min(1024, Math.ceil(Math.sqrt(n / 4))));
    const cellOf = new Uint32Array(n);
    const cellStart = new Uint32Array(g * g + 1);
    for (let i = 0; i < n; i++) {
      // q * g < 2^26, so the shift is exact and the result is below g.
      const c = ((points[2 * i] * g) >>> 16) + ((points[2 * i + 1] * g) >>> 16) * g;
      cellOf[i] = c;
      cellStart[c + 1]++;
    }
    for (let c = 0; c < g * g; c++) cellStart[c + 1] += cellStart[c];
    const fill = cellStart.slice(0, g * g);
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[fill[cellOf[i]]++] = i;
    this.g = g;
    this.points = points;
    this.cellStart = cellStart;
    this.order = order;
  }

  /** How many points share point i's grid cell. */
  population(i) {
    const g = this.g;
    const c = ((this.points[2 * i] * g) >>> 16) + ((this.points[2 * i + 1] * g) >>> 16) * g;
    return this.cellStart[c + 1] - this.cellStart[c];
  }

  /**
   * The index of the point nearest to (qx, qy) within `radiusPx` screen pixels, or -1.
   * kx, ky: screen pixels per quantised unit along x and y. Ties go to the lower index.
   */
  nearest(qx, qy, radiusPx, kx, ky) {
    const { g, points, cellStart, order } = this;
    const rx = kx > 0 ? radiusPx / kx : 65536;
    const ry = ky > 0 ? radiusPx / ky : 65536;
    const cell = (q) => Math.max(0, Math.min(g - 1, Math.floor((q * g) / 65536)));
    const x0 = cell(qx - rx), x1 = cell(qx + rx);
    const y0 = cell(qy - ry), y1 = cell(qy + ry);
    let best = -1;
    let bestD2 = radiusPx * radiusPx;
    for (let cy = y0; cy <= y1; cy++) {
      for (let cx = x0; cx <= x1; cx++) {
        const c = cy * g + cx;
        for (let k = cellStart[c], end = cellStart[c + 1]; k < end; k++) {
          const i = order[k];
          const dx = (points[2 * i] - qx) * kx;
          const dy = (points[2 * i + 1] - qy) * ky;
          const d2 = dx * dx + dy * dy;
          if (d2 < bestD2 || (d2 === bestD2 && i < best)) {
            best = i;
            bestD2 = d2;
          }
        }
      }
    }
    return best;
  }
}
