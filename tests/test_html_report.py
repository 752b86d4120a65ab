"""The HTML report: built from a realistic report dict, then opened in a real headless Chromium.

String checks alone would pass a page that no browser can draw, so the main
tests load the file in Chromium once and check what the browser produced: the
parsed DOM (``--dump-dom``), the console (``--enable-logging=stderr``), the
network log (``--log-net-log``: the page must fetch nothing) and a screenshot
whose pixels must contain the plot colours.  A deliberately broken control page
goes through the same checks, to show they can fail.
"""

from __future__ import annotations

import bisect
import copy
import json
import math
import os
import random
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ctgan_host import html_report
from ctgan_host.html_report import render_html

XSS = "<script>alert(1)</script>"
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# No network for the page: every host name fails to resolve, and the browser's own
# background traffic (updates, sync) is switched off.  The net log still records any
# request the page *tries* to make, which is what the tests look for.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",
    "--v=0",
]


# ---------------------------------------------------------------- report builders


def shares(values: list[float], edges: list[float]) -> list[float]:
    """Histogram shares over `edges`; the last bin is closed, as numpy's is."""
    counts = [0] * (len(edges) - 1)
    for value in values:
        counts[min(bisect.bisect_right(edges, value) - 1, len(counts) - 1)] += 1
    return [c / len(values) for c in counts]


def build_report() -> dict:
    """A `fit` report as the metrics code produces it: two numeric columns, two categorical, losses."""
    rng = random.Random(7)
    age_edges = [18, 24, 30, 36, 42, 48, 54, 60, 66, 72, 78]
    income_edges = [0, 20_000, 40_000, 60_000, 80_000, 100_000, 120_000, 140_000]
    real_age = [min(max(rng.gauss(40, 12), 18), 78) for _ in range(3000)]
    synth_age = [min(max(rng.gauss(42, 14), 18), 78) for _ in range(3000)]
    real_income = [min(rng.lognormvariate(10.7, 0.5), 140_000) for _ in range(3000)]
    synth_income = [min(rng.lognormvariate(10.6, 0.6), 140_000) for _ in range(3000)]
    names = ["age", "income", "hours_per_week"]
    return {
        "verdict": "quality 86%; privacy: 0.0% exact matches, DCR share 51%",
        "quality": {
            "score": 0.86,
            "column_shapes": 0.9,
            "column_pair_trends": 0.8,
            "columns": {"age": 0.91, "income": 0.79, "city": 0.88, XSS: 0.95},
        },
        "privacy": {
            "exact_match_rate": 0.0,
            "dcr_median": 0.12,
            "dcr_p5": 0.03,
            "dcr_share": 0.51,
            "dcr_baseline_protection": 0.7,
            "nndr_p10": 0.6,
            "linkage_rate": 0.48,
            "rows_compared": 4454,
            "holdout_rows": 1113,
        },
        "notes": ["scored on a 10,000-row subsample"],
        "plots": {
            "columns": [
                {
                    "name": "age",
                    "kind": "numeric",
                    "bins": age_edges,
                    "real": shares(real_age, age_edges),
                    "synthetic": shares(synth_age, age_edges),
                },
                {
                    "name": "income",
                    "kind": "numeric",
                    "bins": income_edges,
                    "real": shares(real_income, income_edges),
                    "synthetic": shares(synth_income, income_edges),
                },
                {
                    "name": "city",
                    "kind": "categorical",
                    "categories": ["Oslo", "Lima", "Reykjavík", "(other)"],
                    "real": [0.5, 0.3, 0.15, 0.05],
                    "synthetic": [0.46, 0.33, 0.12, 0.09],
                },
                {
                    "name": XSS,
                    "kind": "categorical",
                    "categories": ["yes", "<b>no</b>"],
                    "real": [0.6, 0.4],
                    "synthetic": [0.55, 0.45],
                },
            ],
            "correlation": {
                "columns": names,
                "real": [[1.0, 0.3, -0.2], [0.3, 1.0, 0.6], [-0.2, 0.6, 1.0]],
                "synthetic": [[1.0, 0.25, -0.9], [0.25, 1.0, 0.4], [-0.9, 0.4, 1.0]],
            },
        },
        "losses": [
            {
                "epoch": e,
                "loss_g": 1.5 * math.exp(-e / 20) + 0.2 * math.sin(e / 3) - 0.3,
                "loss_d": None if e == 17 else -0.4 * math.exp(-e / 15) + 0.05 * math.cos(e),
            }
            for e in range(1, 61)
        ],
    }


def build_evaluate_report() -> dict:
    """An `evaluate` report: no training losses, one numeric column, no holdout."""
    report = copy.deepcopy(build_report())
    del report["losses"]
    report["plots"]["columns"] = [c for c in report["plots"]["columns"] if c["name"] != "income"]
    report["plots"]["correlation"] = {"columns": ["age"], "real": [[1.0]], "synthetic": [[1.0]]}
    report["privacy"].update(dcr_share=None, dcr_baseline_protection=None, holdout_rows=0)
    return report


# ---------------------------------------------------------------- Chromium


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser binary.  Tests never install software: .ci/run installs Debian's
    `chromium`; elsewhere the browser tests skip without one, unless CI is set."""
    found = find_chromium()
    if found is None:
        message = "no Chromium found (tried: " + ", ".join(CHROMIUM_NAMES) + "); install it, as .ci/run does"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass
class PageLoad:
    dom: str
    console: list[str]  # console messages: the report has no script, so any message is a fault
    page_requests: list[str]  # URLs the page itself tried to fetch
    screenshot: bytes | None


def page_requests(net_log: Path) -> list[str]:
    """URLs requested on behalf of the file:// page; the browser's own traffic is keyed differently."""
    text = net_log.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:
        log = json.loads(text.rstrip().rstrip(",") + "]}")  # a log cut short lacks its closing brackets
    names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if names.get(event["type"]) != "URL_REQUEST_START_JOB":
            continue
        from_page = "file://" in str(params.get("network_isolation_key", "")) or params.get("initiator") in ("null", "file://")
        if from_page and not str(params.get("url", "")).startswith(("file:", "data:", "about:")):
            urls.append(params["url"])
    return urls


def load_in_chromium(binary: str, page: Path, workdir: Path, screenshot: bool = False) -> PageLoad:
    workdir.mkdir(parents=True, exist_ok=True)
    net_log, png = workdir / "net.json", workdir / "shot.png"
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={workdir / 'profile'}", f"--log-net-log={net_log}", "--dump-dom"]
    if screenshot:
        # Tall enough for the whole page, so every plot is in the picture.
        command += ["--hide-scrollbars", "--window-size=1280,3400", f"--screenshot={png}"]
    command.append(page.resolve().as_uri())
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return PageLoad(done.stdout, console, page_requests(net_log), png.read_bytes() if screenshot else None)


class DomSummary(HTMLParser):
    """What the tests need from the browser's DOM: plot SVGs, the marks drawn in each, text, tag names."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.plots: list[dict] = []
        self.tags: set[str] = set()
        self.text: list[str] = []
        self._depth = 0  # nesting depth inside the current plot <svg>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        attributes = {k: v or "" for k, v in attrs}
        if tag == "svg" and "plot" in attributes.get("class", "").split():
            self.plots.append({"classes": attributes["class"].split(), "column": attributes.get("data-column"), "marks": 0})
            self._depth = 1
        elif self._depth:
            self._depth += 1
            if tag in ("rect", "path", "polyline", "circle"):
                self.plots[-1]["marks"] += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def of_kind(self, kind: str) -> list[dict]:
        return [p for p in self.plots if kind in p["classes"]]


def summarise(dom: str) -> DomSummary:
    summary = DomSummary()
    summary.feed(dom)
    summary.close()
    return summary


def decode_png(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """Width, height, bytes per pixel and unfiltered rows of an 8-bit RGB/RGBA PNG (stdlib only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data[pos + 8 : pos + 8 + length])
        elif kind == b"IDAT":
            chunks.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, header
    bpp, raw = {2: 3, 6: 4}[colour_type], zlib.decompress(b"".join(chunks))
    stride, previous, rows = width * bpp, bytearray(width * bpp), []
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if kind == 1:  # Sub: add the byte one pixel to the left
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:  # Up: add the byte above
            line = bytearray((a + b) & 255 for a, b in zip(line, previous))
        elif kind == 3:  # Average of left and above
            for i in range(stride):
                line[i] = (line[i] + (((line[i - bpp] if i >= bpp else 0) + previous[i]) >> 1)) & 255
        elif kind == 4:  # Paeth: whichever of left, above, above-left is nearest left + above - above-left
            for i in range(stride):
                left, up = (line[i - bpp], previous[i - bpp]) if i >= bpp else (0, 0)
                above = previous[i]
                guess = left + above - up
                to_left, to_above, to_corner = abs(guess - left), abs(guess - above), abs(guess - up)
                if to_left <= to_above and to_left <= to_corner:
                    predicted = left
                else:
                    predicted = above if to_above <= to_corner else up
                line[i] = (line[i] + predicted) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, bpp, rows


def colour_counts(image: tuple[int, int, int, list[bytes]], colours: dict[str, str], tolerance: int = 8) -> dict[str, int]:
    """How many pixels of a decoded screenshot are (nearly) each named #rrggbb colour."""
    _, _, bpp, rows = image
    histogram: Counter[tuple[int, int, int]] = Counter()
    for row in rows:
        histogram.update(zip(row[0::bpp], row[1::bpp], row[2::bpp]))  # alpha, if any, is ignored
    counts = {}
    for name, hex_colour in colours.items():
        target = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
        counts[name] = sum(n for pixel, n in histogram.items() if all(abs(a - b) <= tolerance for a, b in zip(pixel, target)))
    return counts


@pytest.fixture(scope="module")
def full_load(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, PageLoad]:
    workdir = tmp_path_factory.mktemp("full")
    report = build_report()
    page = workdir / "report.html"
    page.write_text(render_html(report, "Synthetic data report: adult.csv"), encoding="utf-8")
    return report, load_in_chromium(chromium, page, workdir, screenshot=True)


# ---------------------------------------------------------------- tests in Chromium


def test_chromium_parses_every_plot(full_load: tuple[dict, PageLoad]) -> None:
    report, load = full_load
    dom = summarise(load.dom)
    names = [c["name"] for c in report["plots"]["columns"]]
    assert len(dom.plots) == len(names) + 2 + 1  # one per column, real + synthetic heatmaps, losses
    assert [p["column"] for p in dom.of_kind("dist")] == names
    assert len(dom.of_kind("heatmap")) == 2 and len(dom.of_kind("losses")) == 1
    empty = [p for p in dom.plots if p["marks"] < 3]
    assert not empty, f"plots without drawn marks: {empty}"
    # The hostile column name arrived as text, not as an element.
    assert "script" not in dom.tags
    assert XSS in "".join(dom.text)


def test_chromium_console_is_clean_and_page_fetches_nothing(full_load: tuple[dict, PageLoad]) -> None:
    _, load = full_load
    assert load.console == []
    assert load.page_requests == []


def test_chromium_screenshot_shows_the_plots(full_load: tuple[dict, PageLoad]) -> None:
    _, load = full_load
    assert load.screenshot is not None and len(load.screenshot) > 50_000  # a blank page is a few kB
    image = decode_png(load.screenshot)
    assert image[:2] == (1280, 3400)
    counts = colour_counts(
        image,
        {
            "real bars": html_report.REAL,
            "synthetic bars": html_report.SYNTHETIC,
            "generator loss": html_report.LOSS_G,
            "discriminator loss": html_report.LOSS_D,
            "correlation +1": html_report._diverging(1.0),
            "correlation -0.9": html_report._diverging(-0.9),
        },
    )
    # Legend swatches alone are ~100 px each; the thresholds need the plotted marks themselves.
    low = {name: n for name, n in counts.items() if n < 500}
    assert not low, f"colours barely painted: {low} (all: {counts})"


def test_evaluate_report_renders_in_chromium(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "evaluate.html"
    page.write_text(render_html(build_evaluate_report(), "evaluate"), encoding="utf-8")
    load = load_in_chromium(chromium, page, tmp_path)
    dom = summarise(load.dom)
    assert load.console == [] and load.page_requests == []
    assert len(dom.of_kind("dist")) == 3
    assert dom.of_kind("heatmap") == [] and dom.of_kind("losses") == []
    assert "at least two numeric columns" in "".join(dom.text)


def test_checks_catch_a_broken_page(chromium: str, tmp_path: Path) -> None:
    """Control: a script error and an outside image must show up, or the clean results above mean nothing."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><p>broken</p><script>notDefined();</script><img src="https://example.com/pixel.png">', encoding="utf-8"
    )
    load = load_in_chromium(chromium, page, tmp_path)
    assert any("notDefined" in line for line in load.console), load.console
    assert "https://example.com/pixel.png" in load.page_requests


# ---------------------------------------------------------------- tests on the text


def test_document_is_self_contained() -> None:
    doc = render_html(build_report(), "report")
    assert re.findall(r"https?://", doc.replace(SVG_NAMESPACE, "")) == []
    assert re.findall(r"<(script|link|img|iframe|object|embed)\b", doc, re.IGNORECASE) == []
    assert re.findall(r"\bsrc\s*=", doc) == []
    assert re.findall(r'href="(?!#)', doc) == []  # in-page anchors only
    assert re.findall(r"url\((?!#)", doc) == [] and "@import" not in doc and "@font-face" not in doc
    assert "default-src 'none'" in doc  # and the browser is told to refuse outside fetches anyway


def test_user_text_is_escaped() -> None:
    report = build_report()
    report["verdict"] = "<img src=x onerror=alert(2)>"
    report["notes"] = ['"quoted" & <b>bold</b>']
    report["plots"]["correlation"]["columns"][0] = XSS
    doc = render_html(report, "<title>&")
    assert "<script" not in doc.lower()
    assert "<img" not in doc and "<b>bold" not in doc
    assert "&lt;img src=x onerror=alert(2)&gt;" in doc and "&quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt;" in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    assert 'data-column="&lt;script&gt;alert(1)&lt;/script&gt;"' in doc
    assert "<title>&lt;title&gt;&amp;</title>" in doc


def test_scores_are_percentages_and_nulls_are_na() -> None:
    doc = render_html(build_evaluate_report(), "evaluate")
    assert ">86%<" in doc and ">90%<" in doc and ">80%<" in doc
    assert ">0.0%<" in doc  # exact matches keep a decimal: 0.4% is worth seeing
    assert ">4,454<" in doc
    assert doc.count('class="value na">n/a<') == 2  # dcr_share and dcr_baseline_protection
    assert ">48%<" in doc  # the linkage rate
    report = build_evaluate_report()
    del report["privacy"]["linkage_rate"]  # a report from before the linkage rate existed
    assert render_html(report, "old").count('class="value na">n/a<') == 3
    assert "Training losses" not in doc  # evaluate reports have no training


def test_missing_and_malformed_pieces_do_not_raise() -> None:
    assert "No verdict in this report" in render_html({}, "empty")
    assert "n/a" in render_html({"quality": None, "privacy": None, "plots": None, "losses": None}, "nulls")
    assert "at least two numeric columns" in render_html({"plots": {"correlation": None}}, "null correlation")
    broken = {
        "quality": {"score": float("nan"), "columns": {"a": "high"}},
        "privacy": {"exact_match_rate": True, "rows_compared": None},
        "plots": {
            "columns": [
                {"name": "short bins", "kind": "numeric", "bins": [0, 1], "real": [0.5, 0.5]},
                {"name": "text bins", "kind": "numeric", "bins": ["2020-01", "2020-06", "2021-01"], "real": [0.4, 0.6]},
                {"name": "no synthetic", "kind": "categorical", "categories": ["x"], "real": [1.0]},
                {"name": "constant", "kind": "numeric", "bins": [5, 5], "real": [1.0], "synthetic": [1.0]},
                "not a dict",
            ],
            "correlation": {"columns": ["a", "b"], "real": [[1.0]], "synthetic": None},
        },
        "losses": [{"epoch": 1, "loss_g": None, "loss_d": None}],
    }
    doc = render_html(broken, "broken")
    assert doc.count('class="plot dist"') == 3  # text bins, no synthetic, constant; short bins is malformed
    assert "No plot data for this column." in doc
    assert "No correlation data in this report." in doc
    assert "No loss values were recorded" in doc


def test_single_epoch_and_null_gaps_in_losses() -> None:
    one = render_html({"losses": [{"epoch": 1, "loss_g": 0.5, "loss_d": -0.2}]}, "one")
    assert one.count('class="plot losses"') == 1 and "<circle" in one
    gappy = render_html({"losses": [{"epoch": e, "loss_g": None if e == 3 else e, "loss_d": 1.0} for e in range(1, 6)]}, "gap")
    assert gappy.count("<polyline") == 3  # generator split in two at the null, discriminator whole
