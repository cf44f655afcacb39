// Colour schemes of the map and its legend. The GPU reads them from a 256×1 palette texture:
// categories use its first PALETTE.length texels (cycling), numbers the whole 256-step ramp.

export const PALETTE = [
  '#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7',
  '#9c755f', '#17becf', '#a0cbe8', '#ffbe7d', '#ff9d9a', '#86bcb6', '#8cd17d', '#f1ce63',
  '#d4a6c8', '#fabfd2', '#d7b5a6', '#bcbd22',
];

/** Grey for "none"/"missing"; the shader hard-codes the same value. */
export const MISSING = '#808080';

// Viridis from 0.2 to 1: its darkest fifth would vanish on the dark background.
const RAMP = ['#414487', '#2a788e', '#22a884', '#7ad151', '#fde725'];

const rgb = (hex) => [1, 3, 5].map((k) => parseInt(hex.slice(k, k + 2), 16));

function rampAt(t) {
  const f = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
  const k = Math.min(RAMP.length - 2, Math.floor(f));
  const a = rgb(RAMP[k]);
  const b = rgb(RAMP[k + 1]);
  return a.map((v, c) => Math.round(v + (b[c] - v) * (f - k)));
}

/** RGBA texels (256×1) of the palette texture for a colour_by kind. */
export function paletteTexels(kind) {
  const texels = new Uint8Array(256 * 4);
  for (let i = 0; i < 256; i++) {
    const [r, g, b] = kind === 'number' ? rampAt(i / 255) : rgb(PALETTE[i % PALETTE.length]);
    texels.set([r, g, b, 255], i * 4);
  }
  return texels;
}

function formatNumber(v) {
  return Number.isFinite(v) ? String(Number(v.toPrecision(3))) : '?';
}

function swatchRow(colour, label) {
  const row = document.createElement('li');
  const swatch = document.createElement('span');
  swatch.className = 'swatch';
  swatch.style.background = colour;
  const text = document.createElement('span');
  text.textContent = label;
  row.append(swatch, text);
  return row;
}

/**
 * Fills the legend element for a colour_by entry.
 * @param {boolean} hasMissing whether some items have no value (drawn grey)
 */
export function renderLegend(element, entry, hasMissing) {
  const title = document.createElement('div');
  title.className = 'legend-title';
  title.textContent = entry.name;
  const list = document.createElement('ul');
  if (entry.kind === 'number') {
    const bar = document.createElement('div');
    bar.className = 'ramp';
    bar.style.background = `linear-gradient(to right, ${RAMP.join(', ')})`;
    const ends = document.createElement('div');
    ends.className = 'ramp-ends';
    const lo = document.createElement('span');
    lo.textContent = formatNumber(entry.min);
    const hi = document.createElement('span');
    hi.textContent = formatNumber(entry.max);
    ends.append(lo, hi);
    element.replaceChildren(title, bar, ends, list);
  } else {
    const labels = entry.labels ?? [];
    labels.slice(0, PALETTE.length).forEach((label, i) => list.append(swatchRow(PALETTE[i], label)));
    if (labels.length > PALETTE.length) {
      const more = document.createElement('li');
      more.className = 'legend-more';
      more.textContent = `+ ${labels.length - PALETTE.length} more (colours repeat)`;
      list.append(more);
    }
    element.replaceChildren(title, list);
  }
  if (hasMissing) list.append(swatchRow(MISSING, entry.kind === 'number' ? 'missing' : 'none'));
  element.hidden = false;
}
