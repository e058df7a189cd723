"""The compare and analyze reports fit the page: every figure at most a page wide, and in a browser
window 1,280 px wide no image (and nothing else) wider than the window. Both reports are of the
tiny model's Wanda runs that the analysis tests share."""

from pathlib import Path

import pytest

from headless_chromium import chromium, measure_pages
from lp_prune.analysis.render import FIGURE_MAX_PX
from lp_prune.cli import main

WINDOW_PX = 1280
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def compare_report(wanda_runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compare")
    assert main(["compare", str(wanda_runs), "--out", str(out), "--no_wandb"]) == 0
    return out


def png_width(path: Path) -> int:
    """A PNG's width in pixels, from its header (the IHDR chunk follows the signature)."""
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_SIGNATURE, f"{path} is no PNG"
    return int.from_bytes(header[16:20], "big")


def test_report_figures_are_at_most_a_page_wide(compare_report, wanda_analysis):
    figures = [path for folder in (compare_report, wanda_analysis) for path in folder.glob("*.png")]
    widths = {path.name: png_width(path) for path in figures}
    assert len(widths) >= 9  # compare: IoU per layer and by pair, local SNR and rel_error; analyze: five
    assert all(width <= FIGURE_MAX_PX for width in widths.values()), widths


def test_reports_fit_a_1280_px_browser_window(compare_report, wanda_analysis, tmp_path):
    """Both reports open in one headless Chromium session (tests/headless_chromium.py: each report in
    a frame as wide as the window; after load, a script in the page writes every image's natural width
    and laid-out edges into the DOM, which `--dump-dom` prints). Every figure must have loaded (a
    broken image is 0 px wide and would pass), lie inside the window, and no page may scroll sideways."""
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium)")
    folders = (compare_report, wanda_analysis)
    reports = [compare_report / "report.html", wanda_analysis / "analysis.html"]
    pages = measure_pages(browser, reports, tmp_path, width=WINDOW_PX)
    for page, folder in zip(pages, folders, strict=True):
        assert len(page["images"]) == len(list(folder.glob("*.png"))), page["src"]
        for image in page["images"]:
            assert image["natural"] > 0, f"{page['src']}: {image['alt']} did not load"
            where = f"{page['src']}: {image['alt']} spans {image['left']}-{image['right']} px of {page['client']}"
            assert image["left"] >= 0 and image["right"] <= page["client"], where
        assert page["scroll"] <= page["client"], f"{page['src']} is {page['scroll']} px wide in a {WINDOW_PX} px window"
