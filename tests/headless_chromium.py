"""HTML pages laid out by headless Chromium, measured from inside the browser.

One Chromium process opens a page of frames, one frame per page to measure, each `width` px wide
(the window's width). After the load event (which waits for every frame and image) a script writes,
as JSON into a <pre>, each page's scroll width and client width and each image's natural width and
laid-out left and right edges; `--dump-dom` prints the DOM with it, and it is read back here.
`--allow-file-access-from-files` lets the script read the frames' documents on file:// URLs.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
_MEASURED = re.compile(r'<pre id="measured">(.*?)</pre>', re.DOTALL)

_MEASURE = """
window.addEventListener("load", () => {
  const pages = [...document.querySelectorAll("iframe")].map((frame) => {
    const page = frame.contentDocument.documentElement;
    const images = [...frame.contentDocument.images].map((image) => {
      const box = image.getBoundingClientRect();
      return {alt: image.alt, natural: image.naturalWidth, left: box.left, right: box.right};
    });
    return {src: frame.src, scroll: page.scrollWidth, client: page.clientWidth, images};
  });
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify(pages);
  document.body.append(out);
});
"""


def chromium() -> str | None:
    """The path of a Chromium binary on PATH, or None."""
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def measure_pages(browser: str, pages: list[Path], folder: Path, width: int = 1280) -> list[dict[str, Any]]:
    """Each page as laid out in a window `width` px wide: {src, scroll, client, images: [{alt,
    natural, left, right}]}; `folder` holds the frames page and the browser's profile."""
    frames = "".join(f'<iframe src="{page.resolve().as_uri()}"></iframe>' for page in pages)
    style = f"body{{margin:0}}iframe{{display:block;width:{width}px;height:2000px;border:0}}"
    page = folder / "frames.html"
    head = f"<!doctype html><html><head><style>{style}</style></head>"
    page.write_text(f"{head}<body>{frames}<script>{_MEASURE}</script></body></html>")
    command = [
        browser, "--headless", "--disable-gpu", "--no-sandbox", "--allow-file-access-from-files",
        f"--user-data-dir={folder / 'profile'}", f"--window-size={width},2000", "--virtual-time-budget=10000",
        "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    found = _MEASURED.search(dom)
    assert found, f"Chromium printed no measurements; its DOM began: {dom[:300]!r}"
    return json.loads(html.unescape(found.group(1)))
