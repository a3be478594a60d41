"""The benchmark dashboard and report, opened as a reader opens them: asv records one benchmark
for this commit, publish_dashboard.py publishes the site, and headless Chromium (Debian's
chromium and chromium-driver; .ci/run installs them) loads its graph pages and the report with
no internet access: no console errors, drawn data (coloured pixels, finite points), and the bar
chart of backends with two series, which asv's own page left empty."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import check_pages  # noqa: E402
import publish_dashboard  # noqa: E402
import report  # noqa: E402

sys.path.remove(str(BENCHMARKS))
GRAPH = "bench_losses.SoftmaxCrossEntropy.time_softmax_cross_entropy"


@pytest.fixture(scope="module")
def driver():
    if check_pages.browser_paths() is None:
        if os.environ.get("FASTBP_REQUIRE_BROWSER"):  # (.ci/run: a missing browser fails there)
            pytest.fail("chromium or chromedriver missing (apt-get install chromium chromium-driver)")
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is in the test extra")
    with check_pages.chromium() as d:
        yield d


@pytest.fixture(scope="module")
def site(tmp_path_factory, mnist_dir):
    """A published site with this commit's quick run of one benchmark, in a folder of its own."""
    pytest.importorskip("asv", reason="asv is in the test extra")
    if not (ROOT / ".git").exists():
        pytest.skip("asv records results per commit: needs a git checkout")
    tmp = tmp_path_factory.mktemp("asv")
    config = dict(version=1, project="fastbp", repo=str(ROOT), branches=["HEAD"], dvcs="git",
                  environment_type="virtualenv", benchmark_dir=str(BENCHMARKS / "benchmarks"),
                  env_dir=str(tmp / "env"), results_dir=str(tmp / "results"), html_dir=str(tmp / "html"))
    conf = tmp / "asv.conf.json"
    conf.write_text(json.dumps(config))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    env = dict(os.environ, FASTBP_DATA=str(mnist_dir), FASTBP_BENCH_NO_TORCH="1")
    asv = [sys.executable, "-m", "asv"]
    subprocess.run(asv + ["machine", "--yes", "--machine", "fastbp-test", "--config", str(conf)], check=True,
                   capture_output=True, env=env, timeout=120)
    run = subprocess.run(asv + ["run", "--python=same", "--quick", "--machine", "fastbp-test", "--config", str(conf),
                                "--set-commit-hash", commit, "--bench", GRAPH.rsplit(".", 1)[0]],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0 and "failed" not in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    assert publish_dashboard.main(["--config", str(conf)]) == 0
    return tmp / "html"


def test_the_published_site_refers_to_nothing_remote(site):
    text = (site / "index.html").read_text()
    assert publish_dashboard.REMOTE.findall(text) == []
    for target in publish_dashboard.LOCAL.values():
        assert f'"{target}"' in text and (site / target).is_file(), target


def test_the_graph_pages_draw_offline(site, driver, tmp_path):
    with check_pages.serve(site) as base:
        over_commits = check_pages.check_graph(driver, f"{base}/index.html#{GRAPH}")
        backends = check_pages.check_graph(driver, f"{base}/index.html#{GRAPH}?x-axis=backend&"
                                           "p-dtype='float32'&p-dtype='float64'&p-shape='32x10'", min_series=2)
    assert over_commits == [] and backends == []


def test_the_check_sees_the_empty_bar_chart_of_flot_orderbars_as_published(site, driver, tmp_path):
    """The same page with orderBars as released (NaN offsets on a category axis) fails the check:
    the check sees what a reader sees."""
    broken = tmp_path / "html"
    shutil.copytree(site, broken)
    patched = (broken / "vendor" / "jquery.flot.orderBars.js").read_text()
    start, end = patched.index("        // fastbp's patch"), patched.index("        function retrieveBarSeries")
    released = patched[:start] + """        function getAxeMinMaxValues(series,AxeIdx){
            var minMaxValues = new Array();
            for(var i = 0; i < series.length; i++){
                minMaxValues[0] = (series[i].data[0]) ? series[i].data[0][AxeIdx]: null;
                minMaxValues[1] = (series[i].data[series[i].data.length - 1]) ? series[i].data[series[i].data.length - 1][AxeIdx]: null;
            }
            return minMaxValues;
        }

""" + patched[end:]
    (broken / "vendor" / "jquery.flot.orderBars.js").write_text(released)
    with check_pages.serve(broken) as base:
        problems = check_pages.check_graph(driver, f"{base}/index.html#{GRAPH}?x-axis=backend&"
                                           "p-dtype='float32'&p-dtype='float64'&p-shape='32x10'", min_series=2)
    assert any("nothing drawn" in p for p in problems), problems


def test_the_report_draws_from_its_measurements(driver, tmp_path):
    """report.py draws the committed report's measurements again (no timing here), and both that
    page and the committed one show their three plots and tables."""
    committed = ROOT / "docs" / "benchmarks"
    assert report.main(["--out", str(tmp_path), "--from", str(committed)]) == 0
    for folder in (tmp_path, committed):
        with check_pages.serve(folder) as base:
            assert check_pages.check_report(driver, f"{base}/index.html") == []
