// Keyboard navigation on an item page: j / → and k / ← move a highlight through the
// neighbours (#neighbours li a), Enter opens the highlighted one, m shows this item on the map.

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
