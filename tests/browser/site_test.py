#!/usr/bin/env python3
"""Checks a built simsite in headless Chromium (Selenium 4, Debian's chromium and chromium-driver).

    python3 tests/browser/site_test.py http://127.0.0.1:PORT/

The URL is the site root, served over HTTP. Checks, stopping at the first failure (exit 1):
  map     window.simsiteMap.ready resolves; pointsDrawn == map.json "items"; the canvas has
          non-background pixels; simsiteMap.errors is empty; no SEVERE console messages;
          a drag pans by its length (and opens nothing), the wheel zooms in; timeFrames (the
          benchmark hook) draws and times frames of every point; timePan pans with every
          point drawn (fewer than the least budget)
  budget  static/map-budget.js, fed frame times: frames 84 ms apart halve the moving budget
          (and halvings that help go on), one that does not help is undone, frames not asked
          for back to back count for nothing, frames 16.7 ms apart grow it back
  hash    index.html#id=<id of map index 0> centres the map on that item and, once zoomed in,
          draws tiles as thumbnails
  click   a real click at screenOf(0) opens items/<id>/
  item    #neighbours has at least one li, each linking to another item page; the page shows
          "rank R of N" with R and N from api/items/<id>.json and api/manifest.json, and its
          cluster's size from api/clusters.json; key j highlights the first neighbour and m
          goes back to index.html#id=<id>
  search  typing an item's object name (map/names' `also`: its FITS OBJECT) in capitals and
          with `_` for spaces lists it, with that name beside its id
Screenshots map.png, map-item.png and item.png go to $SCREENSHOT_DIR when it is set.
CHROMIUM and CHROMEDRIVER override the browser and driver paths.
"""
import json
import math
import os
import re
import sys
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
ARGS = ["--headless=new", "--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
        "--ignore-gpu-blocklist", "--window-size=1200,800"]
ITEM_URL = re.compile(r"/items/([A-Za-z0-9._~-]+)/$")

# Resolves with {ok} or {ok: false, error} once window.simsiteMap.ready settles.
AWAIT_READY = """
const done = arguments[arguments.length - 1];
window.simsiteMap.ready.then(() => done({ok: true}),
                             (e) => done({ok: false, error: String((e && e.message) || e)}));
"""

# Counts canvas pixels that differ from the most common colour (the background).
COUNT_PIXELS = """
const gl = document.getElementById('map').getContext('webgl2');
const w = gl.drawingBufferWidth, h = gl.drawingBufferHeight;
const px = new Uint32Array(w * h);
gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(px.buffer));
const seen = new Map();
for (let i = 0; i < px.length; i += 13) seen.set(px[i], (seen.get(px[i]) || 0) + 1);
const background = [...seen].sort((a, b) => b[1] - a[1])[0][0];
let other = 0;
for (let i = 0; i < px.length; i++) if (px[i] !== background) other++;
return {width: w, height: h, other: other};
"""


# Feeds static/map-budget.js frame times by hand. Frames 84 ms apart whose cost halves with
# the points (84, then 42, then 21 ms: the last under 30 ms) give two halvings; then frames
# whose time stays 40 ms at any budget (a canvas-bound renderer) make a halving that is
# undone; slow frames that were not asked for back to back (a user's pauses) change nothing;
# frames 16.7 ms apart grow it back.
BUDGET_RULES = """
const done = arguments[arguments.length - 1];
import(new URL('static/map-budget.js', document.baseURI).href).then(({ PointBudget }) => {
  const b = new PointBudget(200000, 10000);
  let at = 0;
  const run = (n, ms, drawn, backToBack = true) => { for (let i = 0; i < n; i++) { at += ms(); b.frame(at, drawn(), true, backToBack); } };
  const slow = [b.moving];
  for (let k = 0; k < 3; k++) {
    run(4, () => 84 * b.moving / 200000, () => b.moving);
    if (b.moving !== slow[slow.length - 1]) slow.push(b.moving);
  }
  run(4, () => 40, () => b.moving);   // 40 ms > 30: halved to 25000 ...
  run(4, () => 40, () => b.moving);   // ... still 40 ms: undone
  const undone = b.moving;
  run(6, () => 100, () => 200000, false);   // asked for long after the frame before
  const gap = b.moving;
  at += 5000;   // a pause, longer than any frame that is timed
  const fast = [b.moving];
  for (let k = 0; k < 40 && b.moving < 200000; k++) {
    run(4, () => 16.7, () => b.moving);
    if (b.moving !== fast[fast.length - 1]) fast.push(b.moving);
  }
  done({ slow, undone, gap, fast });
}, (e) => done({ error: String(e) }));
"""


class Failure(Exception):
    pass


class Run:
    def __init__(self, base):
        self.base = base
        self.passed = 0
        self.shots = os.environ.get("SCREENSHOT_DIR")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ARGS:
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # The system chromedriver, never one Selenium Manager would download.
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
        self.driver.set_script_timeout(180)
        self.driver.set_page_load_timeout(30)

    def ok(self, what):
        self.passed += 1
        print(f"ok  {what}", flush=True)

    def check(self, cond, message):
        if not cond:
            raise Failure(message)

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def screenshot(self, name):
        if self.shots:
            os.makedirs(self.shots, exist_ok=True)
            path = os.path.join(self.shots, name)
            self.driver.save_screenshot(path)
            print(f"    screenshot {path}")

    def console_clean(self, where):
        severe = [e["message"] for e in self.driver.get_log("browser")
                  if e["level"] == "SEVERE" and "favicon.ico" not in e["message"]]
        self.check(not severe, f"{where}: console errors:\n  " + "\n  ".join(severe))
        self.ok(f"{where}: no SEVERE console messages")

    def goto(self, url):
        # Under load, headless Chromium's first navigation sometimes never hears back from
        # its renderer ("Timed out receiving message from renderer"): try again, twice.
        for attempt in range(3):
            try:
                self.driver.get(url)
                return
            except TimeoutException:
                if attempt == 2:
                    raise
                print(f"    (navigation to {url} timed out; retrying)", flush=True)

    def open_map(self, url):
        self.goto(url)
        WebDriverWait(self.driver, 30).until(
            lambda d: d.execute_script("return !!window.simsiteMap"),
            "window.simsiteMap never appeared: static/map.js or a module it imports did not load")
        result = self.driver.execute_async_script(AWAIT_READY)
        status = self.js("return document.getElementById('status')?.textContent")
        self.check(result["ok"], f"the map failed to start: {result.get('error')} (#status: {status!r})")
        errors = self.js("return window.simsiteMap.errors")
        self.check(errors == [], f"simsiteMap.errors is not empty: {errors}")

    def id_at(self, index):
        return self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.simsiteMap.idAt(arguments[0]).then(done, (e) => done(null));", index)

    def test_map(self, items):
        self.open_map(self.base)
        drawn = self.js("return window.simsiteMap.pointsDrawn")
        self.check(drawn == items, f"pointsDrawn is {drawn}, map.json says {items} items")
        self.ok(f"map: ready, {drawn} points drawn, no simsiteMap.errors")
        px = self.js(COUNT_PIXELS)
        self.check(px["other"] > 0, f"the {px['width']}x{px['height']} canvas is blank")
        self.ok(f"map: {px['other']} of {px['width'] * px['height']} canvas pixels are not background")
        self.console_clean("map")
        self.screenshot("map.png")

        # The benchmark hook (benches/map-gpu/) draws and times frames of the whole map.
        timed = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "simsiteMap.timeFrames({zoom: 1, frames: 3}).then(done, (e) => done({error: String(e)}));")
        self.check(timed.get("frames") == 3 and timed.get("points") == items and 0 < timed["median_ms"] <= timed["max_ms"],
                   f"timeFrames gave {timed}")
        self.ok(f"map: timeFrames drew 3 frames of {items} points, median {timed['median_ms']:.1f} ms")
        panned = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "simsiteMap.timePan({zoom: 1, frames: 12}).then(done, (e) => done({error: String(e)}));")
        self.check(panned.get("frames") == 12 and panned.get("points") == items and panned["median_ms"] > 0,
                   f"timePan gave {panned}")
        self.ok(f"map: timePan drew 12 frames of {items} points, median {panned['median_ms']:.1f} ms apart")

        # Drag pans by exactly the drag (and is no click); the wheel zooms in.
        canvas = self.driver.find_element(By.ID, "map")
        pair = "return [simsiteMap.screenOf(0), simsiteMap.screenOf(arguments[0])]"
        before = self.js(pair, items - 1)
        ActionChains(self.driver).move_to_element(canvas).click_and_hold().move_by_offset(100, 50) \
            .release().perform()
        after = self.js(pair, items - 1)
        moved = (after[0][0] - before[0][0], after[0][1] - before[0][1])
        self.check(abs(moved[0] - 100) < 1 and abs(moved[1] - 50) < 1, f"dragging by 100,50 moved the map by {moved}")
        self.check(ITEM_URL.search(self.driver.current_url) is None, "a drag opened an item page")
        ActionChains(self.driver).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, -300).perform()
        zoomed = self.js(pair, items - 1)
        gap = lambda p: math.dist(p[0], p[1])
        self.check(gap(after) == 0 or gap(zoomed) > 1.3 * gap(after),
                   f"the wheel did not zoom in ({gap(after):.1f} -> {gap(zoomed):.1f} px)")
        self.ok("map: dragging pans, the wheel zooms in")

    def test_budget(self):
        # Frame times fed by hand, so the verdicts do not depend on this machine's speed.
        result = self.driver.execute_async_script(BUDGET_RULES)
        self.check("error" not in result, f"map-budget.js: {result.get('error')}")
        slow, undone, gap, fast = result["slow"], result["undone"], result["gap"], result["fast"]
        self.check(slow == [200000, 100000, 50000], f"frames 84 ms apart (drawing fewer each halving) left budgets {slow}, "
                   "expected 200000 halved twice")
        self.check(undone == 50000, f"a halving that left frames as slow was not undone: budget {undone}, expected 50000")
        self.check(gap == 50000, f"slow frames not asked for back to back changed the budget to {gap}")
        self.check(fast[-1] == 200000 and all(a < b for a, b in zip(fast, fast[1:])),
                   f"frames 16.7 ms apart grew the budget as {fast}, expected steps up to 200000")
        self.ok(f"budget: slow frames {slow}, undone {undone}, grown back {fast}")

    def test_search(self):
        """Typing an object's name (its FITS OBJECT, not in its id or title) lists that item."""
        with urllib.request.urlopen(self.base + "map/map.json") as r:
            chunks = json.load(r)["names"]
        named = None
        for url in chunks:
            with urllib.request.urlopen(self.base + url) as r:
                names = json.load(r)
            for j, also in enumerate(names.get("also", [])):
                if also:
                    named = (names["ids"][j], also)
                    break
            if named:
                break
        self.check(named is not None, "no item of map/names/*.json has another name (`also`)")
        item_id, also = named
        self.check(also.lower() not in (item_id + names["titles"][j]).lower(), f"{also!r} is in the id or title")
        self.open_map(f"{self.base}index.html")
        box = self.driver.find_element(By.ID, "search")
        # Typed otherwise: in capitals, `_` for spaces ("NGC_4414" finds "NGC 4414").
        typed = also.upper().replace(" ", "_")
        box.send_keys(typed)
        try:
            WebDriverWait(self.driver, 20).until(lambda d: d.execute_script(
                "return [...document.querySelectorAll('#results a')].map(a => a.dataset.id)").count(item_id) == 1)
        except TimeoutException:
            got = self.js("return document.getElementById('results').textContent")
            raise Failure(f"searching {typed!r} did not list {item_id}: results {got!r}")
        shown = self.js("return document.querySelector(`#results a[data-id='${arguments[0]}'] small`).textContent", item_id)
        self.check(shown == f"{also} · {item_id}", f"the result reads {shown!r}")
        self.ok(f"search: {typed!r} finds {item_id} by its object name {also!r}")

    def test_hash_and_click(self):
        item_id = self.id_at(0)
        self.check(isinstance(item_id, str) and ITEM_URL.search(f"/items/{item_id}/"),
                   f"idAt(0) gave {item_id!r}, not an item id")
        self.open_map(f"{self.base}index.html#id={item_id}")
        x, y = self.js("return window.simsiteMap.screenOf(0)")
        rect = self.js("return document.getElementById('map').getBoundingClientRect().toJSON()")
        cx, cy = rect["left"] + rect["width"] / 2, rect["top"] + rect["height"] / 2
        self.check(math.hypot(x - cx, y - cy) < 2,
                   f"#id={item_id} did not centre the map on it: screenOf(0) = {x:.1f},{y:.1f}, centre {cx},{cy}")
        self.ok(f"hash: #id={item_id} centres the map on map index 0")
        try:
            WebDriverWait(self.driver, 30).until(lambda d: d.execute_script("return window.simsiteMap.tilesDrawn > 0"))
        except TimeoutException:
            raise Failure("zoomed in on an item, but no tile thumbnails were drawn within 30 s")
        self.ok(f"hash: zoomed in, {self.js('return window.simsiteMap.tilesDrawn')} tiles drawn as thumbnails")
        self.console_clean("hash")
        self.screenshot("map-item.png")

        # A real click: offsets are relative to the canvas's in-view centre, floored (W3C).
        px, py = round(x), round(y)
        hit = self.js("const e = document.elementFromPoint(arguments[0], arguments[1]); return e && e.id", px, py)
        self.check(hit == "map", f"the point at {px},{py} is covered by element #{hit}")
        canvas = self.driver.find_element(By.ID, "map")
        ActionChains(self.driver).move_to_element_with_offset(
            canvas, px - math.floor(cx), py - math.floor(cy)).pause(0.2).click().perform()
        try:
            WebDriverWait(self.driver, 20).until(lambda d: ITEM_URL.search(d.current_url.split("#")[0]))
        except TimeoutException:
            raise Failure(f"clicking map index 0 at {px},{py} did not open an item page "
                          f"(URL {self.driver.current_url})")
        opened = ITEM_URL.search(self.driver.current_url.split("#")[0]).group(1)
        self.check(opened == item_id, f"clicking map index 0 opened items/{opened}/, expected items/{item_id}/")
        self.ok(f"click: opened items/{item_id}/")
        return item_id

    def test_item(self, item_id):
        WebDriverWait(self.driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
        links = self.js("return [...document.querySelectorAll('#neighbours li')]"
                        ".map((li) => li.querySelector('a[href]')?.href ?? null)")
        self.check(len(links) >= 1, "the item page has no #neighbours li")
        for href in links:
            m = ITEM_URL.search(href or "")
            self.check(m and m.group(1) != item_id, f"neighbour link {href!r} is not another item page")
        self.ok(f"item: {len(links)} neighbours, each linking to another item page")
        self.test_filled_in(item_id)
        self.console_clean("item")
        self.screenshot("item.png")

        ActionChains(self.driver).send_keys("j").perform()
        focused = self.js("return document.querySelector('#neighbours li')?.classList.contains('focused')")
        self.check(focused, "key j did not highlight the first neighbour")
        ActionChains(self.driver).send_keys("m").perform()
        want = f"index.html#id={item_id}"
        try:
            WebDriverWait(self.driver, 20).until(lambda d: d.current_url.endswith(want))
        except TimeoutException:
            raise Failure(f"key m led to {self.driver.current_url}, not .../{want}")
        self.ok("item: key j highlights a neighbour, key m opens the map at this item")

    def wait_for_text(self, selector, want, whole, what):
        """Waits until the text of `selector` is `want`; else fails quoting `whole`'s text."""
        try:
            WebDriverWait(self.driver, 10).until(
                lambda d: d.execute_script("return document.querySelector(arguments[0])?.textContent", selector) == want)
        except TimeoutException:
            got = self.js(f"return document.querySelector('{whole}')?.textContent ?? null")
            raise Failure(f"the item page's {what} reads {got!r}; expected {want!r} in it")

    def test_filled_in(self, item_id):
        """item.js writes the rank and the cluster size, which the page's bytes leave out."""
        def api(rel):
            with urllib.request.urlopen(self.base + "api/" + rel) as r:
                return json.load(r)
        item, manifest = api(f"items/{item_id}.json"), api("manifest.json")
        want = f"rank {item['outlier_rank']:,} of {manifest['items']:,}, "
        self.wait_for_text("#strangeness .rank", want, "#strangeness", "strangeness")
        detail = want.strip(", ")
        if item.get("cluster") is not None:
            size = next(k["size"] for k in api("clusters.json") if k["cluster"] == item["cluster"])
            want_size = f" ({size:,} images)"
            self.wait_for_text("#cluster .size", want_size, "#cluster", "cluster")
            detail += f", cluster {item['cluster']}{want_size}"
        self.ok(f"item: filled in {detail}")

    def run(self):
        with urllib.request.urlopen(self.base + "map/map.json") as r:
            items = json.load(r)["items"]
        self.test_map(items)
        self.test_budget()
        item_id = self.test_hash_and_click()
        self.test_item(item_id)
        self.test_search()


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} SITE_ROOT_URL")
    base = sys.argv[1] if sys.argv[1].endswith("/") else sys.argv[1] + "/"
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not go online
    try:
        run = Run(base)
    except WebDriverException as e:
        print(f"FAIL: cannot start {CHROMIUM} with {CHROMEDRIVER}: {e.msg}")
        sys.exit(1)
    try:
        run.run()
    except (Failure, WebDriverException, OSError) as e:
        print(f"FAIL: {e.msg if isinstance(e, WebDriverException) else e}")
        try:
            for entry in run.driver.get_log("browser"):
                print(f"    console {entry['level']}: {entry['message']}")
        except WebDriverException:
            pass
        print(f"{run.passed} passed, 1 failed")
        sys.exit(1)
    finally:
        run.driver.quit()
    print(f"{run.passed} passed, 0 failed")


if __name__ == "__main__":
    main()
