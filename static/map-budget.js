// How many points a frame of the map may draw while the view moves, learnt from how fast
// this browser draws them. A GPU draws the full budget (200,000) well within a display
// refresh; a software renderer (SwiftShader, llvmpipe: what Chromium falls back to without a
// usable GPU) took ~100 ms a frame for 113,000 points, so panning stuttered at 10 frames/s.
// While frames come one after another (each asked for as soon as the one before was drawn:
// a drag, a held key, atlases arriving), their spacing is what the browser can sustain:
// slower than SLOW_MS, the budget halves; faster than FAST_MS, it grows again. Halving that does not make frames at least 15 % faster means the
// time goes elsewhere (the canvas, the display's cadence): it is undone, and that frame time
// becomes the floor the thresholds are measured from. A view that stops moving is drawn
// once more with the full budget (map.js), so what stays on screen is never thinned by it.

const MOST_POINTS = 200_000;
const FEWEST_POINTS = 10_000;
// A view still for this long after thinned frames is drawn again with the full budget.
export const STILL_MS = 250;
// Frames further apart than this are not timed, back to back or not.
const LONGEST_MS = 2000;
const SLOW_MS = 30; // below ~33 frames/s
const FAST_MS = 20; // a 60 Hz display gives 16.7
const FRAMES = 3; // frames timed (after a change) before the next decision

export class PointBudget {
  constructor(most = MOST_POINTS, fewest = FEWEST_POINTS) {
    this.most = most;
    this.fewest = Math.min(fewest, most);
    /** The budget of frames drawn while the view moves. */
    this.moving = most;
    this.last = -Infinity; // when the frame before began
    this.ms = 0; // smoothed time between frames of this movement
    this.timed = 0; // frames timed since the last decision
    this.floor = 0; // frame time that fewer points did not lower (0: none found yet)
    this.trial = null; // { budget, ms } before a halving whose effect is not yet known
  }

  /**
   * Notes a frame that began at `at` (ms, as requestAnimationFrame gives it) and drew
   * `drawn` points, `thinned` if the budget left some out. `backToBack`: it was asked for
   * while, or just after, the frame before was drawn, so the time between the two is the
   * browser's and not the user's (a wheel turned notch by notch, a pause in a drag).
   */
  frame(at, drawn, thinned, backToBack = true) {
    const dt = at - this.last;
    this.last = at;
    // Not timed: the user's wait, not the browser's; or the first frame after a change,
    // whose spacing is the time of the frame before it, drawn with the old budget.
    if (!backToBack || !(dt >= 0 && dt <= LONGEST_MS) || this.timed < 0) {
      this.timed = 0;
      return;
    }
    this.ms = this.timed ? 0.6 * this.ms + 0.4 * dt : dt;
    if (++this.timed < FRAMES) return;
    if (this.trial) {
      const { budget, ms } = this.trial;
      this.trial = null;
      if (this.ms > 0.85 * ms) {
        this.floor = this.ms;
        this.set(budget);
        return;
      }
    }
    if (this.floor && this.ms < this.floor) this.floor = this.ms;
    const slow = Math.max(SLOW_MS, 1.3 * this.floor);
    const fast = Math.max(FAST_MS, 1.15 * this.floor);
    if (this.ms > slow && drawn > this.fewest) {
      this.trial = { budget: this.moving, ms: this.ms };
      this.set(Math.max(this.fewest, Math.floor(Math.min(this.moving, drawn) / 2)));
    } else if (this.ms < fast && thinned && this.moving < this.most) {
      this.set(Math.min(this.most, Math.round(this.moving * 1.25)));
    }
  }

  /** A new moving budget; the next frame is not timed (see frame). */
  set(budget) {
    this.timed = -1;
    this.moving = budget;
  }
}
