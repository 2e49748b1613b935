"""The published trend pages in a real headless browser (Debian's chromium, driven by Playwright).

Set ``MNBENCH_SCREENSHOTS=docs`` to refresh the screenshots in ``docs/`` (otherwise they go to tmp_path).
"""

import os
import shutil
from pathlib import Path

import pytest

from mnbench.history.db import open_db
from mnbench.history.ingest import ingest
from mnbench.history.site import publish
from mnbench.history.trends import analyse
from tests.history_support import PHONE, write_history

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip("no system chromium (Debian package 'chromium'; .ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("site")
    root = folder / "runs"
    levels = [3000.0] * 18 + [3250.0] * 14
    write_history(root, levels, model="v3-large_a1.00_r224_fp32.tflite", seed=11, runs_per_commit=2)
    write_history(root, [500.0] * 32, model="v3-small_a1.00_r224_int8.tflite", seed=12)
    write_history(root, [1900.0] * 20 + [1600.0] * 12, target_kind="android", target="28031FDH2003",
                  desc=PHONE, model="v3-small_a1.00_r224_fp32.tflite", threads=4, seed=13)
    engine = open_db(folder / "history.sqlite")
    ingest(engine, [root])
    views = analyse(engine)
    return publish(views, folder / "site", "mnbench latency history"), views


def _shots() -> Path | None:
    return Path(os.environ["MNBENCH_SCREENSHOTS"]) if os.environ.get("MNBENCH_SCREENSHOTS") else None


def test_index_lists_every_series_by_machine(browser, site, tmp_path):
    index, views = site
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(index.as_uri())
    assert page.locator("tr.series").count() == len(views) == 3
    assert page.locator("h2").all_inner_texts() == ["28031FDH2003 (Google Pixel 7)",
                                                    "host (AMD EPYC 7B13, 2 cores)"]
    links = page.locator("tr.series a").all_inner_texts()
    assert sorted(links) == ["v3-large_a1.00_r224_fp32.tflite", "v3-small_a1.00_r224_fp32.tflite",
                             "v3-small_a1.00_r224_int8.tflite"]
    assert page.locator("tr.series svg.spark polyline").count() == 3
    latest = page.locator("tr.series", has_text="v3-large").locator(".step").inner_text()
    assert latest.startswith("+8.") and "(open)" in latest
    assert "-15." in page.locator("tr.series", has_text="v3-small_a1.00_r224_fp32").inner_text()
    page.screenshot(path=str((_shots() or tmp_path) / "history-index.png"), full_page=True)
    page.close()


def test_series_page_draws_the_plot_and_marks_the_step(browser, site, tmp_path):
    index, _ = site
    page = browser.new_page(viewport={"width": 1100, "height": 820})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(index.as_uri())
    page.locator("tr.series a", has_text="v3-large").click()
    page.wait_for_selector("#plot .main-svg")
    points = page.locator("#plot .scatterlayer .trace").first.locator("path.point")
    assert points.count() == 32  # one marker per commit (two runs each)
    labels = page.locator("#plot .annotation-text").all_text_contents()  # SVG text: text, not inner_text
    assert len(labels) == 1 and labels[0].startswith("+8.") and labels[0].endswith("%")
    assert page.locator("#plot .shapelayer path").count() == 1  # the step's line
    assert page.locator("tr.step").count() == 1 and "c017..c018" in page.locator("tr.step").inner_text()
    box = points.nth(20).bounding_box()  # plotly's drag layer takes the pointer: move the mouse there
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector(".hoverlayer .hovertext")
    hover = page.locator(".hoverlayer .hovertext").text_content()
    assert "commit c020" in hover and "2 run(s)" in hover
    assert errors == []
    page.screenshot(path=str((_shots() or tmp_path) / "history-series.png"), full_page=True)
    page.close()
