"""SVG charts for the admin dashboard: a line chart, horizontal bars, grouped columns.

Pure functions: plain data in, an SVG document out (a ``str``, every text escaped); no Flask,
no I/O. The value axis starts at 0 and is marked at round ticks, multiples of a step of
1, 2 or 5 × 10^n (:func:`nice_ticks`); a caller plotting bytes scales them to the unit it
labels (MiB, say) first, so that the ticks are round in that unit.
"""

from __future__ import annotations

import math
from html import escape
from typing import Callable, Sequence

COLORS = ["#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04"]
STEP_MANTISSAS = (1, 2, 5)

Series = Sequence[tuple[str, Sequence[float | None]]]
Fmt = Callable[[float], str]


def nice_ticks(top: float, max_intervals: int = 5, min_step: float = 0) -> list[float]:
    """Ticks ``0, s, 2s, …, n·s`` with ``n·s >= top``: ``s`` is the smallest step of 1, 2 or
    5 × 10^k that is at least ``min_step`` and reaches ``top`` in at most ``max_intervals``
    steps. ``top <= 0`` (no data) is taken as ``min_step``, or 1."""
    if max_intervals < 1 or not math.isfinite(top):
        raise ValueError(f"no ticks for top={top!r} in {max_intervals!r} intervals")
    if top <= 0:
        top = min_step or 1
    k = math.floor(math.log10(top / max_intervals))
    while True:
        for m in STEP_MANTISSAS:
            step = _decimal(m, k)
            # The tolerance absorbs float noise in top / step (0.3 / 0.1 is 2.9999999999999996).
            if step >= min_step and math.ceil(top / step - 1e-9) <= max_intervals:
                return [_decimal(i * m, k) for i in range(math.ceil(top / step - 1e-9) + 1)]
        k += 1


def _decimal(m: int, k: int) -> float:
    """m × 10^k as the float nearest to it (0.6, not 0.6000000000000001)."""
    return float(m * 10**k) if k >= 0 else m / 10**-k


def line_chart(title: str, labels: Sequence[str], series: Series, fmt: Fmt = str, width: int = 560,
               height: int = 220, min_top: float = 0) -> str:
    """A line chart of ``series`` (name, values; None is a gap) over ``labels``; one point
    draws as a dot. The axis reaches at least ``min_top``."""
    left, right, top, bottom = 72, 40, 28, 34
    w, h = width - left - right, height - top - bottom
    ticks = nice_ticks(max([min_top, *(v for _, vals in series for v in vals if v is not None)]))
    n = len(labels)

    def x(i):
        return left + (w * i / (n - 1) if n > 1 else w / 2)

    def y(v):
        return top + h - h * (v / ticks[-1])

    out = [_head(title, width, height), _legend(series, width, right), _value_axis(ticks, left, w, y, fmt)]
    step = max(1, n // 6)
    for i in range(0, n, step):
        out.append(f'<text x="{x(i):.1f}" y="{top + h + 16}" class="ax" text-anchor="middle">{escape(labels[i])}</text>')
    for k, (_name, vals) in enumerate(series):
        c = COLORS[k % len(COLORS)]
        pts = [(x(i), y(v)) for i, v in enumerate(vals) if v is not None]
        if len(pts) > 1:
            out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="'
                       + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        for a, b in pts:
            out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{c}"/>')
    out.append("</svg>")
    return "".join(out)


def bar_chart(title: str, items: Sequence[tuple[str, float]], fmt: Fmt = str, width: int = 560,
              color: str = COLORS[0]) -> str:
    """Horizontal bars, one per (label, value), each labelled with ``fmt(value)``."""
    left, right, row = 170, 90, 24
    height = 30 + row * max(len(items), 1)
    w = width - left - right
    top_v = max((v for _, v in items), default=0) or 1
    out = [_head(title, width, height)]
    if not items:
        out.append('<text x="4" y="44" class="ax">nothing yet</text>')
    for i, (label, v) in enumerate(items):
        yy = 26 + i * row
        bw = w * v / top_v
        short = label if len(label) <= 26 else label[:25] + "…"
        out.append(f'<text x="{left - 6}" y="{yy + 14}" class="ax" text-anchor="end">{escape(short)}</text>'
                   f'<rect x="{left}" y="{yy + 2}" width="{max(bw, 1):.1f}" height="{row - 8}" fill="{color}"/>'
                   f'<text x="{left + bw + 6:.1f}" y="{yy + 14}" class="ax">{escape(fmt(v))}</text>')
    out.append("</svg>")
    return "".join(out)


def column_chart(title: str, labels: Sequence[str], series: Series, fmt: Fmt = str, width: int = 560,
                 height: int = 220, min_top: float = 0, min_step: float = 0) -> str:
    """Grouped vertical bars: one group per label, one bar per series. Counts want
    ``min_step=1``, so that no tick falls between two whole numbers."""
    left, right, top, bottom = 60, 12, 28, 34
    w, h = width - left - right, height - top - bottom
    ticks = nice_ticks(max([min_top, *(v for _, vals in series for v in vals)]), min_step=min_step)
    n, k = max(len(labels), 1), max(len(series), 1)
    gw = w / n
    bw = max(min(gw * 0.8 / k, 40), 1)

    def y(v):
        return top + h - h * v / ticks[-1]

    out = [_head(title, width, height), _legend(series, width, right), _value_axis(ticks, left, w, y, fmt)]
    step = max(1, n // 8)
    for i, lab in enumerate(labels):
        cx = left + gw * i + gw / 2
        if i % step == 0:
            out.append(f'<text x="{cx:.1f}" y="{top + h + 16}" class="ax" text-anchor="middle">{escape(lab)}</text>')
        for j, (_name, vals) in enumerate(series):
            bh = h * vals[i] / ticks[-1]
            bx = cx - bw * k / 2 + j * bw
            out.append(f'<rect x="{bx:.1f}" y="{top + h - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
                       f'fill="{COLORS[j % len(COLORS)]}"/>')
    out.append("</svg>")
    return "".join(out)


def _head(title: str, width: int, height: int) -> str:
    """The opening tag, sized and labelled for screen readers, and the title."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{escape(title)}">'
            f'<text x="4" y="16" class="t">{escape(title)}</text>')


def _legend(series: Series, width: int, right: int) -> str:
    """Swatches on the title's row, right-aligned, so they never cover the plot."""
    out, x = [], width - right
    for k, (name, _vals) in reversed(list(enumerate(series))):
        x -= 24 + 7 * len(name)
        c = COLORS[k % len(COLORS)]
        out.append(f'<rect x="{x}" y="7" width="10" height="10" fill="{c}"/>'
                   f'<text x="{x + 14}" y="16" class="ax">{escape(name)}</text>')
    return "".join(out)


def _value_axis(ticks: list[float], left: float, w: float, y: Callable[[float], float], fmt: Fmt) -> str:
    """A gridline across the plot and a label left of it at every tick."""
    return "".join(f'<line x1="{left}" x2="{left + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y(v) + 4:.1f}" class="ax" text-anchor="end">{escape(fmt(v))}</text>'
                   for v in ticks)
