// Keyboard navigation on an item page: j / → and k / ← move a highlight through the
// neighbours (#neighbours li a), Enter opens the highlighted one, m shows this item on the map.
// Also fills in what changes whenever the archive grows, so that the page's own bytes do not:
// the outlier rank ("rank R of N", from api/items/<id>.json and api/manifest.json) and the
// size of the item's cluster (api/clusters.json).

const entries = [...document.querySelectorAll('#neighbours > li')]
  .map((li) => ({ li, link: li.querySelector('a[href]') }))
  .filter((e) => e.link);
let current = -1;

function highlight(k) {
  if (!entries.length) return;
  current = Math.max(0, Math.min(entries.length - 1, k));
  entries.forEach((e, j) => e.li.classList.toggle('focused', j === current));
  entries[current].link.focus({ preventScroll: true });
  entries[current].li.scrollIntoView({ block: 'nearest', inline: 'nearest' });
}

document.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
  if (e.target.closest?.('input, textarea, select, [contenteditable]')) return;
  switch (e.key) {
    case 'j':
    case 'ArrowRight':
      highlight(current + 1);
      break;
    case 'k':
    case 'ArrowLeft':
      highlight(current - 1);
      break;
    case 'Enter':
      // A focused link opens by itself; this covers focus having moved elsewhere.
      if (current < 0 || document.activeElement === entries[current].link) return;
      location.assign(entries[current].link.href);
      break;
    case 'm': {
      const id = document.body.dataset.id;
      if (!id) return;
      location.assign(new URL(`../../index.html#id=${encodeURIComponent(id)}`, location.href).href);
      break;
    }
    default:
      return;
  }
  e.preventDefault();
});

const api = new URL('../api/', import.meta.url);

async function json(rel) {
  const r = await fetch(new URL(rel, api));
  if (!r.ok) throw new Error(`${rel}: HTTP ${r.status}`);
  return r.json();
}

async function fillIn() {
  const id = document.body.dataset.id;
  const rank = document.querySelector('#strangeness .rank');
  const size = document.querySelector('#cluster .size');
  if (!id || (!rank && !size)) return;
  const fmt = (v) => Number(v).toLocaleString('en');
  if (rank) {
    const [item, manifest] = await Promise.all([json(`items/${encodeURIComponent(id)}.json`), json('manifest.json')]);
    if (Number.isInteger(item.outlier_rank)) rank.textContent = `rank ${fmt(item.outlier_rank)} of ${fmt(manifest.items)}, `;
  }
  if (size) {
    const c = Number(document.querySelector('#cluster').dataset.cluster);
    const summary = (await json('clusters.json')).find((k) => k.cluster === c);
    if (summary) size.textContent = ` (${fmt(summary.size)} images)`;
  }
}

// Without these the page still says which band of strangeness and which cluster it is in.
fillIn().catch((e) => console.warn('item page: could not fill in the rank or cluster size:', e.message));
