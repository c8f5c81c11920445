// The listing's selection: a "select all" box (shown only when this script runs; without it
// each row's own box still works) that ticks every row's box.
const all = document.getElementById('select-all');
if (all) {
  const boxes = () => Array.from(document.querySelectorAll('input[name="ids"][form="selection"]'));
  all.hidden = boxes().length === 0;
  all.addEventListener('change', () => { for (const b of boxes()) b.checked = all.checked; });
  document.addEventListener('change', (ev) => {
    if (ev.target.name === 'ids') all.checked = boxes().every((b) => b.checked);
  });
}
