"""Render a quality/privacy report as one self-contained HTML page.

The JSON report is for scripts; a person deciding whether synthetic data is
good enough wants to *see* it: which columns drifted, whether correlations
survived, whether training settled.  This module turns the report dict into a
single HTML document with inline CSS and inline SVG plots drawn here, so the
file can be mailed, archived or opened on an offline machine and looks the
same everywhere.  There is no JavaScript, no font, no image and no link to
anything outside the file, and a Content-Security-Policy tells the browser to
refuse any outside fetch should one ever slip in.

Every piece of the report is optional: a missing or malformed piece becomes a
short note ("n/a", "no plot data") instead of an exception, because an
`evaluate` run has no losses and a table with one numeric column has no
correlations.  All text from the report (column names and categories come from
user data) goes through ``html.escape``.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

__all__ = ["render_html"]

REAL = "#2b6cb0"  # blue
SYNTHETIC = "#dd6b20"  # orange: tells apart from blue for common colour blindness
LOSS_G = "#6b46c1"  # purple and teal, so loss curves are not mistaken for real/synthetic
LOSS_D = "#2c7a7b"
# Diverging scale for correlations: blue for -1, near-white for 0, red for +1.
NEGATIVE = (33, 102, 172)
NEUTRAL = (247, 247, 247)
POSITIVE = (178, 24, 43)

MAX_CATEGORIES = 40  # beyond this a bar chart is a wall; the producer lumps the rest into "(other)"
LABEL_CHARS = 18  # axis labels are cut here; the full text stays in a hover tooltip

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
:root { color-scheme: light; --ink: #1a202c; --muted: #5a6473; --line: #e2e8f0;
  --card: #ffffff; --page: #f4f6f9; --accent: #2b6cb0; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--page); color: var(--ink);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 20px 48px; }
header.top { background: var(--card); border-bottom: 1px solid var(--line); }
header.top .inner { max-width: 1240px; margin: 0 auto; padding: 22px 20px 14px; }
h1 { margin: 0 0 6px; font-size: 1.6rem; overflow-wrap: anywhere; }
h2 { margin: 34px 0 6px; font-size: 1.25rem; }
h3 { margin: 0; font-size: 1rem; overflow-wrap: anywhere; }
p.verdict { margin: 0 0 10px; font-size: 1.1rem; font-weight: 600; color: var(--accent); }
p.lead, p.empty { color: var(--muted); margin: 4px 0 14px; }
nav a { color: var(--accent); margin-right: 16px; text-decoration: none; font-size: .9rem; }
nav a:hover { text-decoration: underline; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.card .label { color: var(--muted); font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 1.7rem; font-weight: 650; margin: 2px 0; font-variant-numeric: tabular-nums; }
.card .value.na { color: #a0aec0; }
.card .hint { color: var(--muted); font-size: .8rem; }
.meter { height: 6px; background: var(--line); border-radius: 3px; overflow: hidden; margin-top: 6px; }
.meter > span { display: block; height: 100%; background: var(--accent); }
ul.notes { margin: 14px 0 0; padding-left: 20px; color: var(--muted); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 14px; align-items: start; }
figure { margin: 0; }
.plotcard {
  background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; break-inside: avoid;
}
.plotcard header { display: flex; justify-content: space-between; align-items: baseline; gap: 8px; margin-bottom: 6px; }
.badge { font-size: .78rem; color: var(--muted); white-space: nowrap; }
.badge b { color: var(--ink); }
svg.plot { display: block; max-width: 100%; height: auto; }
svg.plot text { font-size: 11px; fill: #4a5568; }
svg.plot text.title { font-size: 12px; fill: #2d3748; font-weight: 600; }
svg.plot .grid line { stroke: #edf2f7; }
svg.plot .axis { stroke: #a0aec0; }
svg.plot .hover { fill: transparent; }
svg.plot .hover:hover { fill: rgba(45, 55, 72, .07); }
svg.plot.dist, svg.plot.losses { width: 100%; }
.heatmaps { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.heatmaps figcaption { font-weight: 600; margin-bottom: 4px; }
table { border-collapse: collapse; font-size: .9rem; background: var(--card); }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.scorebars { display: grid; grid-template-columns: minmax(90px, max-content) 1fr 3.5em; gap: 4px 10px;
  align-items: center; max-width: 640px; font-size: .9rem; }
.scorebars .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; max-width: 260px; }
.scorebars .bar { height: 10px; background: var(--line); border-radius: 5px; overflow: hidden; }
.scorebars .bar > span { display: block; height: 100%; background: var(--accent); }
footer { color: var(--muted); font-size: .8rem; margin-top: 40px; }
@media print { body { background: #fff; } .plotcard, .card { border-color: #ccc; } }
"""


# ---------------------------------------------------------------- small helpers


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> float | None:
    """A finite float, or None for null, NaN, text and booleans (JSON true is not a score)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


def _pct(value: Any, digits: int = 0) -> str:
    number = _number(value)
    if number is None:
        return "n/a"
    text = f"{number * 100:.{digits}f}"
    # "-0%" from a tiny negative rounding error would look like a bug.
    return (text.lstrip("-") if float(text) == 0 else text) + "%"


def _plain(value: Any) -> str:
    """A distance or ratio: three significant digits, grouped thousands when large."""
    number = _number(value)
    if number is None:
        return "n/a"
    return f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.3g}"


def _count(value: Any) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{round(number):,}"


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _c(value: float) -> str:
    """An SVG coordinate: one decimal is finer than a pixel and keeps the file small."""
    return f"{value:.1f}".removesuffix(".0")


# ---------------------------------------------------------------- scales and axes


def _nice_step(span: float, target: int) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about `target` intervals."""
    raw = span / max(target, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5):
        if raw <= multiple * magnitude * (1 + 1e-9):
            return multiple * magnitude
    return 10 * magnitude


def _nice_domain(lo: float, hi: float, target: int = 5) -> tuple[float, float, float]:
    """Widen [lo, hi] outward to round numbers; a zero-width range gets some room."""
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1):
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = _nice_step(hi - lo, target)
    return math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step, step


def _ticks(lo: float, hi: float, step: float) -> list[float]:
    # Multiplying an integer index avoids drift from adding the step repeatedly.
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [i * step for i in range(first, last + 1)]


def _tick_formatter(ticks: list[float], step: float, percent: bool = False) -> Callable[[float], str]:
    """Labels with just enough decimals for the step, k/M/B for big numbers, % for shares."""
    factor = 100.0 if percent else 1.0
    biggest = max((abs(t) * factor for t in ticks), default=0.0)
    scale, suffix = 1.0, ""
    if not percent and biggest >= 10_000:
        scale, suffix = next((s, n) for s, n in ((1e9, "B"), (1e6, "M"), (1e3, "k")) if biggest >= s)
    scaled_step = step * factor / scale
    decimals = next((d for d in range(7) if abs(round(scaled_step, d) - scaled_step) < 1e-9 * max(1.0, scaled_step)), 6)
    unit = "%" if percent else suffix

    def fmt(value: float) -> str:
        text = f"{value * factor / scale:.{decimals}f}"
        if float(text) == 0:
            return "0" + ("%" if percent else "")  # not "-0.0" or "0k"
        return text + unit

    return fmt


@dataclass(frozen=True)
class _Frame:
    """Maps data coordinates to SVG pixels inside a plot's margins."""

    width: float
    height: float
    left: float
    right: float
    top: float
    bottom: float
    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float

    def x(self, value: float) -> float:
        return self.left + (value - self.x_lo) / (self.x_hi - self.x_lo) * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        return self.height - self.bottom - (value - self.y_lo) / (self.y_hi - self.y_lo) * (self.height - self.top - self.bottom)


def _axes(
    frame: _Frame, x_ticks: Iterable[tuple[float, str]], y_ticks: Iterable[tuple[float, str]], x_label: str, y_label: str
) -> list[str]:
    """Horizontal grid lines, both axis lines, tick labels and axis titles."""
    base, left = frame.height - frame.bottom, frame.left
    parts = ['<g class="grid">']
    y_ticks, x_ticks = list(y_ticks), list(x_ticks)
    for value, _ in y_ticks:
        y = _c(frame.y(value))
        parts.append(f'<line x1="{_c(left)}" x2="{_c(frame.width - frame.right)}" y1="{y}" y2="{y}"/>')
    parts.append("</g>")
    parts.append(f'<line class="axis" x1="{_c(left)}" x2="{_c(frame.width - frame.right)}" y1="{_c(base)}" y2="{_c(base)}"/>')
    parts.append(f'<line class="axis" x1="{_c(left)}" x2="{_c(left)}" y1="{_c(frame.top)}" y2="{_c(base)}"/>')
    for value, label in y_ticks:
        parts.append(f'<text x="{_c(left - 6)}" y="{_c(frame.y(value) + 4)}" text-anchor="end">{_esc(label)}</text>')
    for value, label in x_ticks:
        x = _c(frame.x(value))
        parts.append(f'<line class="axis" x1="{x}" x2="{x}" y1="{_c(base)}" y2="{_c(base + 4)}"/>')
        parts.append(f'<text x="{x}" y="{_c(base + 16)}" text-anchor="middle">{_esc(label)}</text>')
    if x_label:
        middle = (left + frame.width - frame.right) / 2
        parts.append(f'<text x="{_c(middle)}" y="{_c(frame.height - 4)}" text-anchor="middle">{_esc(x_label)}</text>')
    if y_label:
        middle = (frame.top + base) / 2
        parts.append(f'<text transform="translate(12 {_c(middle)}) rotate(-90)" text-anchor="middle">{_esc(y_label)}</text>')
    return parts


def _svg_open(kind: str, width: float, height: float, label: str, attrs: str = "") -> str:
    # No xmlns: inline SVG in HTML needs none, and it keeps the page free of URLs.
    return (
        f'<svg class="plot {kind}" viewBox="0 0 {_c(width)} {_c(height)}" width="{_c(width)}" '
        f'height="{_c(height)}" role="img" aria-label="{_esc(label)}"{attrs}>'
    )


def _legend(x: float, y: float, entries: list[tuple[str, str]]) -> list[str]:
    """Swatches drawn inside the SVG, right-aligned at x, so a saved plot still explains itself."""
    parts, cursor = [], x
    for colour, name in reversed(entries):
        cursor -= 7 * len(name) + 4
        parts.append(f'<text x="{_c(cursor)}" y="{_c(y + 9)}">{_esc(name)}</text>')
        cursor -= 15
        parts.append(f'<rect x="{_c(cursor)}" y="{_c(y)}" width="10" height="10" rx="2" fill="{colour}"/>')
        cursor -= 14
    return parts


def _empty(message: str) -> str:
    return f'<p class="empty">{_esc(message)}</p>'


# ---------------------------------------------------------------- header


def _card(label: str, value: str, hint: str = "", meter: float | None = None) -> str:
    value_class = "value na" if value == "n/a" else "value"
    parts = [f'<div class="card"><div class="label">{_esc(label)}</div><div class="{value_class}">{_esc(value)}</div>']
    if meter is not None:
        width = max(0.0, min(1.0, meter)) * 100
        parts.append(f'<div class="meter"><span style="width:{width:.1f}%"></span></div>')
    if hint:
        parts.append(f'<div class="hint">{_esc(hint)}</div>')
    parts.append("</div>")
    return "".join(parts)


def _score_cards(quality: dict) -> str:
    cards = [
        ("Quality", "score", "overall; higher is better"),
        ("Column shapes", "column_shapes", "each column's distribution"),
        ("Column pair trends", "column_pair_trends", "relationships between columns"),
    ]
    return "".join(_card(label, _pct(quality.get(key)), hint, _number(quality.get(key))) for label, key, hint in cards)


def _privacy_cards(privacy: dict) -> str:
    share_hint = "closer to training than holdout; ~50% is ideal"
    if _number(privacy.get("dcr_share")) is None and not _number(privacy.get("holdout_rows")):
        share_hint = "needs holdout rows kept out of training"  # say why it is missing
    cards = [
        _card("Exact matches", _pct(privacy.get("exact_match_rate"), 1), "synthetic rows copied from training rows"),
        _card("DCR share", _pct(privacy.get("dcr_share")), share_hint),
        _card("DCR baseline protection", _pct(privacy.get("dcr_baseline_protection")), "higher is better"),
        _card("DCR median", _plain(privacy.get("dcr_median")), "median distance to closest training row"),
        _card("DCR 5th percentile", _plain(privacy.get("dcr_p5")), "the closest 5% of synthetic rows"),
        _card("NNDR 10th percentile", _plain(privacy.get("nndr_p10")), "nearest/second-nearest distance ratio"),
        _card("Linkage rate", _pct(privacy.get("linkage_rate")), "inside a real row's own neighbourhood; 0 ideal, new rows ~50%"),
        _card("Rows compared", _count(privacy.get("rows_compared")), "synthetic rows checked"),
        _card("Holdout rows", _count(privacy.get("holdout_rows")), "real rows kept out of training"),
    ]
    return "".join(cards)


def _column_scores(quality: dict) -> str:
    """Per-column scores, worst first: that is where a reader should look."""
    scores = [(str(name), _number(value)) for name, value in _dict(quality.get("columns")).items()]
    scores = [(name, value) for name, value in scores if value is not None]
    if not scores:
        return ""
    scores.sort(key=lambda item: (item[1], item[0]))
    rows = []
    for name, value in scores:
        width = max(0.0, min(1.0, value)) * 100
        rows.append(
            f'<div class="name" title="{_esc(name)}">{_esc(name)}</div>'
            f'<div class="bar"><span style="width:{width:.1f}%"></span></div>'
            f'<div class="num">{_pct(value)}</div>'
        )
    return (
        '<h2 id="column-scores">Column scores</h2><p class="lead">How closely each synthetic column '
        'follows the real one, worst first.</p><div class="scorebars">' + "".join(rows) + "</div>"
    )


# ---------------------------------------------------------------- distributions


def _shares(values: Any, length: int) -> list[float] | None:
    """A list of `length` shares with nulls read as 0, or None when the shape is wrong."""
    items = _list(values)
    if len(items) != length:
        return None
    return [_number(v) or 0.0 for v in items]


def _numeric_plot(column: dict, name: str) -> str | None:
    """Overlaid histograms: real as filled bars, synthetic as a step outline over them."""
    bins = _list(column.get("bins"))
    real = _shares(column.get("real"), len(bins) - 1)
    synthetic = _shares(column.get("synthetic"), len(bins) - 1)
    if len(bins) < 2 or real is None:
        return None
    edges = [_number(b) for b in bins]
    labelled_slots = any(e is None for e in edges) or any(b <= a for a, b in pairwise(edges))
    if labelled_slots:
        # Bins that are not increasing numbers (e.g. dates as text): equal slots, edges as labels.
        edges = [float(i) for i in range(len(bins))]
    widths = [b - a for a, b in pairwise(edges)]
    uniform = max(widths) - min(widths) <= 1e-6 * max(widths)

    # With unequal bins a share hides how dense a narrow bin is, so plot share per unit instead.
    def height(shares: list[float]) -> list[float]:
        return shares if uniform else [s / w for s, w in zip(shares, widths)]

    real_h = height(real)
    synth_h = height(synthetic) if synthetic is not None else None
    top_value = max(real_h + (synth_h or []) + [0.0])
    # 5% headroom so the tallest bar never touches the frame.
    _, y_hi, y_step = _nice_domain(0.0, (top_value or 0.01) * 1.05, 4)
    frame = _Frame(400, 240, 52, 12, 26, 40, edges[0], edges[-1], 0.0, y_hi)
    y_fmt = _tick_formatter(_ticks(0.0, y_hi, y_step), y_step, percent=uniform)
    y_ticks = [(t, y_fmt(t)) for t in _ticks(0.0, y_hi, y_step)]
    if labelled_slots:
        picks = sorted({round(i * (len(bins) - 1) / 4) for i in range(5)})
        x_ticks = [(edges[i], _short(str(bins[i]), 12)) for i in picks]
    else:
        _, _, x_step = _nice_domain(edges[0], edges[-1], 5)
        x_vals = _ticks(edges[0], edges[-1], x_step)
        x_fmt = _tick_formatter(x_vals, x_step)
        x_ticks = [(t, x_fmt(t)) for t in x_vals]

    parts = [
        _svg_open(
            "dist",
            frame.width,
            frame.height,
            f"Distribution of {name}: real vs synthetic",
            f' data-column="{_esc(name)}" data-kind="numeric"',
        )
    ]
    parts += _axes(frame, x_ticks, y_ticks, "", "share of rows" if uniform else "share per unit")
    base = frame.y(0.0)
    for i, value in enumerate(real_h):
        x0, x1, y = frame.x(edges[i]), frame.x(edges[i + 1]), frame.y(value)
        parts.append(
            f'<rect x="{_c(x0 + 0.5)}" y="{_c(y)}" width="{_c(max(x1 - x0 - 1, 0.5))}" '
            f'height="{_c(base - y)}" fill="{REAL}" fill-opacity="0.5"/>'
        )
    if synth_h is not None:
        # Synthetic as an outline only: two translucent fills would mix into a muddy third colour.
        path = [f"M{_c(frame.x(edges[0]))} {_c(base)}"]
        for i, value in enumerate(synth_h):
            y = _c(frame.y(value))
            path.append(f"L{_c(frame.x(edges[i]))} {y}L{_c(frame.x(edges[i + 1]))} {y}")
        path.append(f"L{_c(frame.x(edges[-1]))} {_c(base)}")
        parts.append(f'<path d="{"".join(path)}" fill="none" stroke="{SYNTHETIC}" stroke-width="2"/>')
    # Transparent full-height bands carry the exact numbers as native hover tooltips (no script).
    for i in range(len(real)):
        x0, x1 = frame.x(edges[i]), frame.x(edges[i + 1])
        span = f"{bins[i]} to {bins[i + 1]}"
        synth_text = _pct(synthetic[i], 1) if synthetic is not None else "n/a"
        parts.append(
            f'<rect class="hover" x="{_c(x0)}" y="{_c(frame.top)}" width="{_c(x1 - x0)}" '
            f'height="{_c(base - frame.top)}"><title>{_esc(span)}\nreal {_pct(real[i], 1)}, '
            f"synthetic {_esc(synth_text)}</title></rect>"
        )
    parts += _legend(frame.width - frame.right, 6, [(REAL, "real"), (SYNTHETIC, "synthetic")])
    parts.append("</svg>")
    return "".join(parts)


def _categorical_plot(column: dict, name: str) -> str | None:
    """Horizontal side-by-side bars per category: long category names stay readable."""
    categories = [str(c) for c in _list(column.get("categories"))]
    real = _shares(column.get("real"), len(categories))
    synthetic = _shares(column.get("synthetic"), len(categories))
    if not categories or real is None:
        return None
    hidden = max(0, len(categories) - MAX_CATEGORIES)
    categories, real = categories[:MAX_CATEGORIES], real[:MAX_CATEGORIES]
    synthetic = synthetic[:MAX_CATEGORIES] if synthetic is not None else None
    row = 24 if synthetic is not None else 16
    height = 30 + row * len(categories) + 38 + (14 if hidden else 0)
    _, x_hi, x_step = _nice_domain(0.0, (max(real + (synthetic or []) + [0.0]) or 0.01) * 1.05, 4)
    frame = _Frame(400, height, 118, 14, 30, 38 + (14 if hidden else 0), 0.0, x_hi, 0.0, 1.0)
    fmt = _tick_formatter(_ticks(0.0, x_hi, x_step), x_step, percent=True)
    x_ticks = [(t, fmt(t)) for t in _ticks(0.0, x_hi, x_step)]

    parts = [
        _svg_open(
            "dist",
            frame.width,
            frame.height,
            f"Distribution of {name}: real vs synthetic",
            f' data-column="{_esc(name)}" data-kind="categorical"',
        )
    ]
    parts.append('<g class="grid">')
    for value, _ in x_ticks:
        x = _c(frame.x(value))
        parts.append(f'<line x1="{x}" x2="{x}" y1="{_c(frame.top)}" y2="{_c(height - frame.bottom)}"/>')
    parts.append("</g>")
    base = height - frame.bottom
    parts.append(f'<line class="axis" x1="{_c(frame.left)}" x2="{_c(frame.left)}" y1="{_c(frame.top)}" y2="{_c(base)}"/>')
    for value, label in x_ticks:
        parts.append(f'<text x="{_c(frame.x(value))}" y="{_c(base + 14)}" text-anchor="middle">{_esc(label)}</text>')
    parts.append(
        f'<text x="{_c((frame.left + frame.width - frame.right) / 2)}" y="{_c(base + 30)}" '
        'text-anchor="middle">share of rows</text>'
    )
    for i, category in enumerate(categories):
        y = frame.top + i * row
        bar = 9 if synthetic is not None else 11
        series = [(REAL, real[i])] + ([(SYNTHETIC, synthetic[i])] if synthetic is not None else [])
        for j, (colour, value) in enumerate(series):
            width = max(frame.x(max(value, 0.0)) - frame.left, 0.0)
            parts.append(
                f'<rect x="{_c(frame.left)}" y="{_c(y + 3 + j * (bar + 1))}" width="{_c(width)}" height="{bar}" fill="{colour}"/>'
            )
        parts.append(
            f'<text x="{_c(frame.left - 6)}" y="{_c(y + row / 2 + 4)}" text-anchor="end">{_esc(_short(category))}</text>'
        )
        synth_text = _pct(synthetic[i], 1) if synthetic is not None else "n/a"
        parts.append(
            f'<rect class="hover" x="0" y="{_c(y)}" width="{_c(frame.width)}" height="{row}">'
            f"<title>{_esc(category)}\nreal {_pct(real[i], 1)}, synthetic {_esc(synth_text)}</title></rect>"
        )
    if hidden:
        parts.append(f'<text x="{_c(frame.left)}" y="{_c(height - 4)}">{hidden} more categories not shown</text>')
    parts += _legend(frame.width - frame.right, 8, [(REAL, "real"), (SYNTHETIC, "synthetic")])
    parts.append("</svg>")
    return "".join(parts)


def _distribution_section(plots: dict, quality: dict) -> str:
    columns = [c for c in _list(plots.get("columns")) if isinstance(c, dict)]
    if not columns:
        return ""
    scores = _dict(quality.get("columns"))
    cards = []
    for index, column in enumerate(columns):
        name = str(column.get("name", f"column {index + 1}"))
        kind = str(column.get("kind") or "")
        if "categories" in column or kind == "categorical":
            svg = _categorical_plot(column, name)
        else:
            svg = _numeric_plot(column, name)
        score = _number(scores.get(name))
        score_text = f" · score <b>{_pct(score)}</b>" if score is not None else ""
        badge = f'<span class="badge">{_esc(kind)}{score_text}</span>'
        body = svg if svg is not None else _empty("No plot data for this column.")
        cards.append(f'<figure class="plotcard" id="dist-{index}"><header><h3>{_esc(name)}</h3>{badge}</header>{body}</figure>')
    return (
        '<h2 id="distributions">Column distributions</h2><p class="lead">Share of rows per bin or category; '
        'hover a bar for the exact numbers.</p><div class="grid">' + "".join(cards) + "</div>"
    )


# ---------------------------------------------------------------- correlations


def _matrix(value: Any, size: int) -> list[list[float | None]] | None:
    rows = _list(value)
    if len(rows) != size or any(len(_list(r)) != size for r in rows):
        return None
    return [[_number(v) for v in _list(r)] for r in rows]


def _diverging(value: float) -> str:
    """Colour for a correlation: interpolate neutral towards blue (negative) or red (positive)."""
    t = max(-1.0, min(1.0, value))
    end = POSITIVE if t >= 0 else NEGATIVE
    rgb = (round(n + (e - n) * abs(t)) for n, e in zip(NEUTRAL, end))
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _heatmap(names: list[str], matrix: list[list[float | None]], which: str) -> str:
    n = len(names)
    cell = max(10.0, min(52.0, 360.0 / n))  # two grids side by side fit a laptop screen
    margin = min(130.0, 12 + 6.5 * max(len(_short(s, 16)) for s in names))
    # Diagonal column labels lean right past the last cell: leave them room.
    width, height = margin + cell * n + 0.7 * margin, margin + cell * n + 4
    parts = [_svg_open("heatmap", width, height, f"Correlation matrix, {which} data", f' data-kind="{_esc(which.lower())}"')]
    for i, name in enumerate(names):
        centre = margin + (i + 0.5) * cell
        label = _esc(_short(name, 16))
        parts.append(
            f'<text x="{_c(margin - 5)}" y="{_c(centre + 4)}" text-anchor="end">{label}<title>{_esc(name)}</title></text>'
        )
        # Column labels run diagonally so long names do not collide.
        parts.append(
            f'<text transform="translate({_c(centre + 3)} {_c(margin - 5)}) rotate(-45)">{label}'
            f"<title>{_esc(name)}</title></text>"
        )
    show_values = cell >= 30
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            x, y = margin + j * cell, margin + i * cell
            fill = "#cbd5e0" if value is None else _diverging(value)
            text = "n/a" if value is None else f"{value:.2f}"
            parts.append(
                f'<rect x="{_c(x)}" y="{_c(y)}" width="{_c(cell - 1)}" height="{_c(cell - 1)}" fill="{fill}">'
                f"<title>{_esc(names[i])} \u00d7 {_esc(names[j])}\n{which.lower()} {text}</title></rect>"
            )
            if show_values:
                ink = "#ffffff" if value is not None and abs(value) > 0.6 else "#2d3748"
                parts.append(
                    f'<text x="{_c(x + cell / 2 - 0.5)}" y="{_c(y + cell / 2 + 3.5)}" text-anchor="middle" '
                    f'style="fill:{ink};font-size:10px">{text}</text>'
                )
    parts.append("</svg>")
    return "".join(parts)


def _colour_legend() -> str:
    """The -1..1 scale as a gradient bar; drawn once, shared by both heatmaps."""
    stops = "".join(f'<stop offset="{(v + 1) / 2:.2f}" stop-color="{_diverging(v)}"/>' for v in (-1, -0.5, 0, 0.5, 1))
    width, left, bar = 300, 20, 260
    parts = [
        (
            f'<svg class="legend corr-legend" viewBox="0 0 {width} 46" width="{width}" height="46" role="img" '
            'aria-label="Colour scale from -1 to 1">'
        ),
        f'<defs><linearGradient id="corr-scale" x1="0" x2="1" y1="0" y2="0">{stops}</linearGradient></defs>',
        f'<rect x="{left}" y="6" width="{bar}" height="12" fill="url(#corr-scale)" stroke="#cbd5e0"/>',
    ]
    for value in (-1, -0.5, 0, 0.5, 1):
        x = left + (value + 1) / 2 * bar
        parts.append(
            f'<line x1="{_c(x)}" x2="{_c(x)}" y1="18" y2="22" stroke="#a0aec0"/>'
            f'<text x="{_c(x)}" y="34" text-anchor="middle" style="font-size:11px;fill:#4a5568">{value:g}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _largest_gaps(names: list[str], real: list[list[float | None]], synthetic: list[list[float | None]]) -> str:
    """The pairs whose correlation moved most: the heatmaps show it, this names it."""
    pairs = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            r, s = real[i][j], synthetic[i][j]
            if r is not None and s is not None:
                pairs.append((abs(r - s), names[i], names[j], r, s))
    if not pairs:
        return ""
    pairs.sort(key=lambda p: -p[0])
    rows = "".join(
        f"<tr><td>{_esc(a)} \u00d7 {_esc(b)}</td><td class=num>{r:.2f}</td><td class=num>{s:.2f}</td>"
        f"<td class=num>{gap:.2f}</td></tr>"
        for gap, a, b, r, s in pairs[:5]
    )
    return (
        '<h3 style="margin:18px 0 6px">Largest differences</h3><table><thead><tr><th>Pair</th>'
        "<th class=num>Real</th><th class=num>Synthetic</th><th class=num>|Δ|</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _correlation_section(plots: dict) -> str:
    if "correlation" not in plots:
        return ""
    corr = plots["correlation"]
    title = '<h2 id="correlations">Correlations</h2>'
    names = [str(n) for n in _list(_dict(corr).get("columns"))]
    # The metrics code sends null when the table has fewer than two numeric columns.
    if len(names) < 2:
        return title + _empty("Correlations need at least two numeric columns; this table has fewer.")
    real = _matrix(corr.get("real"), len(names))
    synthetic = _matrix(corr.get("synthetic"), len(names))
    if real is None and synthetic is None:
        return title + _empty("No correlation data in this report.")
    figures = [
        f"<figure><figcaption>{label}</figcaption>{_heatmap(names, m, label)}</figure>"
        for label, m in (("Real", real), ("Synthetic", synthetic))
        if m is not None
    ]
    gaps = _largest_gaps(names, real, synthetic) if real is not None and synthetic is not None else ""
    return (
        title + '<p class="lead">Pearson correlation between numeric columns: the two grids should look '
        "alike. Blue is negative, red positive.</p>"
        + _colour_legend()
        + '<div class="heatmaps">'
        + "".join(figures)
        + "</div>"
        + gaps
    )


# ---------------------------------------------------------------- losses


def _segments(points: list[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """Split a series at nulls, so a missing epoch is a gap rather than a misleading straight line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, y))
    return [run for run in runs if run]


def _loss_plot(losses: list[dict]) -> str | None:
    epochs = [_number(row.get("epoch")) for row in losses]
    if any(e is None for e in epochs):
        epochs = [float(i + 1) for i in range(len(losses))]
    series = [
        ("generator", LOSS_G, [(e, _number(row.get("loss_g"))) for e, row in zip(epochs, losses)]),
        ("discriminator", LOSS_D, [(e, _number(row.get("loss_d"))) for e, row in zip(epochs, losses)]),
    ]
    values = [y for _, _, points in series for _, y in points if y is not None]
    if not values:
        return None
    x_lo, x_hi = min(epochs), max(epochs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_lo, y_hi, y_step = _nice_domain(min(values), max(values), 5)
    frame = _Frame(1000, 320, 58, 16, 28, 44, x_lo, x_hi, y_lo, y_hi)
    _, _, x_step = _nice_domain(x_lo, x_hi, 8)
    x_step = float(max(math.ceil(x_step), 1))  # epochs are whole numbers: no tick at 2.5
    x_vals = _ticks(x_lo, x_hi, x_step)
    y_vals = _ticks(y_lo, y_hi, y_step)
    x_fmt, y_fmt = _tick_formatter(x_vals, x_step), _tick_formatter(y_vals, y_step)

    parts = [_svg_open("losses", frame.width, frame.height, "Generator and discriminator loss per epoch")]
    parts += _axes(frame, [(v, x_fmt(v)) for v in x_vals], [(v, y_fmt(v)) for v in y_vals], "epoch", "loss")
    if y_lo < 0 < y_hi:
        # The discriminator's (Wasserstein-style) loss swings around zero; make zero easy to find.
        y = _c(frame.y(0.0))
        parts.append(
            f'<line x1="{_c(frame.left)}" x2="{_c(frame.width - frame.right)}" y1="{y}" y2="{y}" '
            'stroke="#a0aec0" stroke-dasharray="4 3"/>'
        )
    few = len(losses) <= 60
    for _, colour, points in series:
        for run in _segments(points):
            coords = " ".join(f"{_c(frame.x(x))},{_c(frame.y(y))}" for x, y in run)
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round"/>')
            if few or len(run) == 1:
                parts += [f'<circle cx="{_c(frame.x(x))}" cy="{_c(frame.y(y))}" r="2.5" fill="{colour}"/>' for x, y in run]
    step = (frame.x(x_hi) - frame.x(x_lo)) / max(len(losses) - 1, 1)
    for epoch, row in zip(epochs, losses):
        x = frame.x(epoch) - step / 2
        tip = f"epoch {epoch:g}\ngenerator {_plain(row.get('loss_g'))}, discriminator {_plain(row.get('loss_d'))}"
        parts.append(
            f'<rect class="hover" x="{_c(x)}" y="{_c(frame.top)}" width="{_c(step)}" '
            f'height="{_c(frame.height - frame.top - frame.bottom)}"><title>{_esc(tip)}</title></rect>'
        )
    parts += _legend(frame.width - frame.right, 6, [(LOSS_G, "generator"), (LOSS_D, "discriminator")])
    parts.append("</svg>")
    return "".join(parts)


def _loss_section(report: dict) -> str:
    # An evaluate report has no training, hence no key at all: no section rather than an empty one.
    if report.get("losses") is None:
        return ""
    losses = [row for row in _list(report.get("losses")) if isinstance(row, dict)]
    title = '<h2 id="losses">Training losses</h2>'
    svg = _loss_plot(losses) if losses else None
    if svg is None:
        return title + _empty("No loss values were recorded for this model.")
    return (
        title + '<p class="lead">CTGAN trains two networks against each other, so neither loss has to fall '
        "steadily; curves that settle are a better sign than curves that keep drifting apart.</p>"
        f'<figure class="plotcard">{svg}</figure>'
    )


# ---------------------------------------------------------------- page


def render_html(report: dict, title: str) -> str:
    """The whole report as one HTML document (a str); nothing in it refers outside the file."""
    report = _dict(report)
    quality, privacy, plots = _dict(report.get("quality")), _dict(report.get("privacy")), _dict(report.get("plots"))
    verdict = report.get("verdict")
    notes = [str(n) for n in _list(report.get("notes")) if n is not None]

    sections = [
        _distribution_section(plots, quality),
        _correlation_section(plots),
        _loss_section(report),
    ]
    column_scores = _column_scores(quality)
    links = [
        (anchor, label)
        for anchor, label, body in (
            ("quality", "Scores", True),
            ("column-scores", "Column scores", column_scores),
            ("distributions", "Distributions", sections[0]),
            ("correlations", "Correlations", sections[1]),
            ("losses", "Training", sections[2]),
        )
        if body
    ]
    nav = "<nav>" + "".join(f'<a href="#{a}">{_esc(label)}</a>' for a, label in links) + "</nav>"
    verdict_html = (
        f'<p class="verdict">{_esc(verdict)}</p>'
        if verdict
        else '<p class="verdict" style="color:var(--muted)">No verdict in this report.</p>'
    )
    notes_html = ('<ul class="notes">' + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>") if notes else ""

    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="generator" content="ctgan-server-cli">',
            f"<title>{_esc(title)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            f'<header class="top"><div class="inner"><h1>{_esc(title)}</h1>{verdict_html}{nav}</div></header>',
            "<main>",
            '<h2 id="quality" style="margin-top:8px">Quality</h2>',
            f'<div class="cards">{_score_cards(quality)}</div>',
            '<h2 id="privacy">Privacy</h2>',
            f'<div class="cards">{_privacy_cards(privacy)}</div>',
            notes_html,
            column_scores,
            *[s for s in sections if s],
            (
                "<footer>Generated by ctgan-server-cli. This file is self-contained: no scripts, fonts or "
                "network requests.</footer>"
            ),
            "</main>",
            "</body>",
            "</html>",
            "",
        ]
    )
