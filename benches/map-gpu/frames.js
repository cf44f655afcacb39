// Evaluated in the map page (index.html) by cdp.py: which WebGL renderer draws it, then the
// time of frames drawn one after another at several zoom levels (simsiteMap.timeFrames:
// each frame read back, so the GPU's work counts and the display's refresh does not), then
// the spacing of the frames of a pan (simsiteMap.timePan).
(async () => {
  for (let i = 0; i < 600 && !window.simsiteMap; i++) await new Promise((r) => setTimeout(r, 100));
  await window.simsiteMap.ready;
  const ready_ms = performance.now(); // since the navigation started
  const gl = document.getElementById('map').getContext('webgl2');
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  const renderer = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
  const runs = [];
  // Up to 8x the whole map's scale: at 1M items thumbnails (atlases) appear only beyond it.
  for (const zoom of [1, 2, 4, 8]) runs.push(await window.simsiteMap.timeFrames({ zoom, frames: 30 }));
  // Panning the whole map, one frame per animation frame as a drag draws them: every frame
  // with the full budget, then with the budget that adapts to the renderer (map-budget.js).
  const pans = [];
  for (const adaptive of [false, true]) pans.push(await window.simsiteMap.timePan({ zoom: 1, frames: 90, adaptive }));
  return { renderer, ready_ms, errors: window.simsiteMap.errors, runs, pans };
})()
