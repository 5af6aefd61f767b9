"""The benchmark report opened in headless Chromium (Debian's package, installed by tools/setup.sh): the charts render.

The screenshot is left in tests/output/benchmark_report/report.png. Without chromium the test skips on a developer's
machine and fails in CI (CI=true), where tools/setup.sh must have installed it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

# (test_benchmark_html makes the collection importable)
from test_benchmark_html import FIXTURE, comparison_of
from ansible_collections.onprem.llm_serving.plugins.filter.benchmark import FilterModule

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
OUTPUT = os.path.join(ROOT, "tests", "output", "benchmark_report")
WIDTH, HEIGHT = 1400, 4200
# measures every chart after layout and writes the sizes into the DOM, for --dump-dom (only in the test's copy)
MEASURE = """<script>
const sizes = [...document.querySelectorAll('figure.chart')].map(f => {
  const r = f.querySelector('svg').getBoundingClientRect();
  return f.dataset.metric + ':' + Math.round(r.width) + 'x' + Math.round(r.height) + '@' + Math.round(r.top + window.scrollY);
});
const p = document.createElement('pre'); p.id = 'sizes'; p.textContent = sizes.join(' '); document.body.appendChild(p);
</script>"""


def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: tools/setup.sh installs Debian's chromium package (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium, or make setup)")
    return path


def headless(browser, *args):
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--disable-extensions",
           "--user-data-dir=" + os.path.join(OUTPUT, "profile"), "--window-size=%d,%d" % (WIDTH, HEIGHT)] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True, env=dict(os.environ, HOME=OUTPUT))


def test_report_renders_in_headless_chromium():
    browser = chromium()
    from PIL import Image  # pillow comes with matplotlib (requirements/constraints.txt)

    shutil.rmtree(OUTPUT, ignore_errors=True)
    os.makedirs(OUTPUT)
    with open(FIXTURE) as f:
        run = json.load(f)
    page = FilterModule().filters()["benchmark_report_html"](run, title="lab run", comparisons=[comparison_of(run)])
    report = os.path.join(OUTPUT, "report.html")
    with open(report, "w") as f:
        f.write(page)
    measured = os.path.join(OUTPUT, "measured.html")
    with open(measured, "w") as f:
        f.write(page.replace("</body>", MEASURE + "</body>"))

    # every chart is laid out with a real size, one under the other
    dom = headless(browser, "--dump-dom", "file://" + measured).stdout
    sizes = re.search(r'<pre id="sizes">([^<]*)</pre>', dom)
    assert sizes, dom[-2000:]
    found = [re.match(r"(\w+):(\d+)x(\d+)@(\d+)$", s).groups() for s in sizes.group(1).split()]
    assert [f[0] for f in found] == ["ttft", "itl", "e2el", "output_throughput", "goodput", "failed", "ab_ttft"]
    for metric, w, h, top in found:
        assert int(w) >= 400 and int(h) >= 200, (metric, w, h)
    tops = [int(f[3]) for f in found]
    assert tops == sorted(tops) and tops[-1] < HEIGHT, tops

    # the screenshot: not blank, and the charts' own colours are drawn inside the charts' boxes
    shot = os.path.join(OUTPUT, "report.png")
    headless(browser, "--screenshot=" + shot, "file://" + report)
    image = Image.open(shot).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 50, "a blank or nearly blank screenshot"
    white = sum(n for n, c in colours if c == (255, 255, 255))
    assert white < 0.97 * WIDTH * HEIGHT

    def count(box, rgb):
        crop = image.crop(box)
        pixels = crop.get_flattened_data() if hasattr(crop, "get_flattened_data") else crop.getdata()
        return sum(1 for px in pixels if all(abs(a - b) <= 8 for a, b in zip(px, rgb)))

    for i, (metric, w, h, top) in enumerate(found):
        box = (0, int(top), WIDTH, min(HEIGHT, int(top) + int(h)))
        blue = count(box, (0x1F, 0x77, 0xB4))  # p50 line, tok/s bars, request throughput bars, caching-on bars
        red = count(box, (0xC6, 0x28, 0x28))  # the failed requests' bar
        print("%s: %sx%s px at y=%s, %d blue px, %d red px" % (metric, w, h, top, blue, red))
        if metric == "failed":
            assert red > 500, (metric, red)
        else:
            assert blue > 200, (metric, blue)
    # the failed-requests banner's red border is at the top of the page
    assert count((0, 0, WIDTH, int(found[0][3])), (0xC6, 0x28, 0x28)) > 1000
