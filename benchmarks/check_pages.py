"""Open the published asv dashboard and the static report the way a reader does, in headless
Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium), and check that they
draw: no console errors, a graph page whose canvas holds drawn data (coloured pixels of the
series, and series whose points are finite numbers), the report's images loaded.

    python benchmarks/check_pages.py --site benchmarks/.asv/html --report docs/benchmarks [--screenshots DIR]

Each page is served over HTTP from a local server (asv's page loads its data with requests,
which ``file://`` pages may not make); nothing is fetched from the internet.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import shutil
import sys
import threading
import time
from pathlib import Path

#: JavaScript: the main graph's series, each as [finite data points, points in total], and the
#: number of its canvas's coloured pixels (flot's series colours; axes and grid are grey)
GRAPH_STATE = """
if (typeof $ === 'undefined') { return null; }
var plot = $('#main-graph').data('plot');
if (!plot) { return null; }
var series = plot.getData().map(function (s) {
    var p = s.datapoints.points, size = s.datapoints.pointsize, finite = 0;
    for (var i = 0; i < p.length; i += size) { if (isFinite(p[i]) && isFinite(p[i + 1])) { finite++; } }
    return [finite, p.length / size];
});
var canvas = document.querySelector('#main-graph canvas.flot-base');
var d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data, coloured = 0;
for (var i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 0 && Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 60) { coloured++; }
}
return [series, coloured];
"""


def browser_paths():
    """(chromium, chromedriver) executables, or None where either is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@contextlib.contextmanager
def serve(folder):
    """An HTTP server for ``folder`` on a free local port; yields its base URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def chromium(width=1280, height=900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = browser_paths()
    if paths is None:
        raise RuntimeError("chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--disable-background-networking"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver):
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def graph_state(driver, url, timeout=60):
    """Load ``url`` (a dashboard graph page) and wait until its graph is drawn: ([[finite,
    total] per series], coloured pixels), or None when no graph appeared in ``timeout`` s."""
    driver.get(url)
    state, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = driver.execute_script(GRAPH_STATE)
        if state and state[0] and all(total > 0 for _, total in state[0]):  # plotted, every series loaded
            time.sleep(0.5)  # (a second draw may follow the first as the series load)
            return driver.execute_script(GRAPH_STATE)
        time.sleep(0.25)
    return state


def check_graph(driver, url, min_series=1, screenshot=None):
    """A list of what is wrong with the graph page at ``url`` (empty when it draws)."""
    state = graph_state(driver, url)
    if screenshot:
        driver.save_screenshot(str(screenshot))
    problems = [f"console: {m}" for m in console_errors(driver)]
    if not state:
        return problems + [f"{url}: no graph drawn"]
    series, coloured = state
    drawn = [s for s in series if s[0] > 0]
    if len(drawn) < min_series:
        problems.append(f"{url}: {len(drawn)} of {len(series)} series have finite points ({series}), "
                        f"{min_series} expected")
    if any(finite < total for finite, total in series):
        problems.append(f"{url}: points that are not finite numbers in {series}")
    if coloured < 50:
        problems.append(f"{url}: the canvas has {coloured} coloured pixels: nothing drawn")
    return problems


def check_report(driver, url, screenshot=None):
    """A list of what is wrong with the report page at ``url``: images that did not load,
    tables without rows, console errors."""
    driver.get(url)
    images = driver.execute_script(
        "return Array.from(document.images).map(function (i) { return [i.src, i.complete && i.naturalWidth]; });")
    rows = driver.execute_script("return document.querySelectorAll('table tr').length;")
    if screenshot:
        driver.save_screenshot(str(screenshot))
    problems = [f"console: {m}" for m in console_errors(driver)]
    problems += [f"{url}: image {src} not drawn" for src, width in images if not width]
    if len(images) < 3 or rows < 6:
        problems.append(f"{url}: {len(images)} images and {rows} table rows, expected the three plots and tables")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", help="the published asv site (html_dir)")
    parser.add_argument("--graph", default="bench_losses.SoftmaxCrossEntropy.time_softmax_cross_entropy",
                        help="the benchmark whose graph pages are checked")
    parser.add_argument("--series", default="p-dtype='float32'&p-dtype='float64'&p-shape='32x10'",
                        help="the parameter values selected for its bar chart of backends (two series or more)")
    parser.add_argument("--report", help="the folder report.py wrote")
    parser.add_argument("--screenshots", default=None, help="save a PNG of each page here")
    args = parser.parse_args(argv)
    shots = Path(args.screenshots) if args.screenshots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    problems = []
    with chromium() as driver:
        if args.site:
            with serve(args.site) as base:
                problems += check_graph(driver, f"{base}/index.html#{args.graph}",
                                        screenshot=shots and shots / "graph_commits.png")
                problems += check_graph(driver, f"{base}/index.html#{args.graph}?x-axis=backend&{args.series}", min_series=2,
                                        screenshot=shots and shots / "graph_backends.png")
        if args.report:
            with serve(args.report) as base:
                problems += check_report(driver, f"{base}/index.html", screenshot=shots and shots / "report.png")
    print("\n".join(problems) or "every page draws")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
