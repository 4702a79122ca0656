"""Charts as inline SVG text, drawn with the standard library alone (no matplotlib needed).

Two shapes cover the reports: a line chart (several series, optional bands, dashed reference lines,
linear or log x) and a forest plot (one row per comparison: a point and its interval around 0).
Every text that comes from data is XML-escaped; the output is a complete `<svg>` element that works
inline in HTML and as a stand-alone `.svg` file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Sequence

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")
VERDICT_COLORS = {"helps": "#2ca02c", "hurts": "#d62728"}
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\""


@dataclass
class Series:
    """One line: x and y values (None or NaN leaves a gap), an optional band [lo, hi] per point."""

    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    lo: Sequence[float | None] | None = None
    hi: Sequence[float | None] | None = None
    dashed: bool = False
    color: str | None = None
    markers: bool = True
    extra: dict[str, str] = field(default_factory=dict)


def _finite(v: float | None) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if not (_finite(lo) and _finite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if (hi - lo) / (m * mag) <= n)
    start = math.floor(lo / step + 1e-9) * step
    end = math.ceil(hi / step - 1e-9) * step
    count = max(1, min(50, round((end - start) / step)))
    return [round(start + i * step, 12) for i in range(count + 1)]


def _label(v: float, percent: bool = False) -> str:
    if percent:
        return f"{v * 100:+.0f}%" if v else "0"
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.0e}"
    return f"{v:.4g}"


def line_chart(series: Sequence[Series], *, title: str, xlabel: str, ylabel: str, log_x: bool = False,
               xticks: Sequence[float] | None = None, width: int = 760, height: int = 320) -> str:
    """A line chart of `series` (each with its own colour, legend on the right)."""
    pts = [(x, y) for s in series for x, y in zip(s.xs, s.ys) if _finite(x) and _finite(y)]
    pts += [(x, v) for s in series for band in (s.lo, s.hi) if band for x, v in zip(s.xs, band)
            if _finite(x) and _finite(v)]
    if log_x:
        pts = [(x, y) for x, y in pts if x > 0]
    if not pts:
        return _empty(title, width)
    fx = (lambda x: math.log10(x)) if log_x else (lambda x: float(x))
    xs, ys = [fx(p[0]) for p in pts], [p[1] for p in pts]
    yt = nice_ticks(min(ys), max(ys))
    ylo, yhi = yt[0], yt[-1]
    if xticks is None:
        if log_x:
            xticks = sorted({p[0] for p in pts})
            xlo, xhi = min(xs), max(xs)
        else:
            xt = nice_ticks(min(xs), max(xs))
            xticks, xlo, xhi = xt, xt[0], xt[-1]
    else:
        xlo, xhi = min([*xs, *map(fx, xticks)]), max([*xs, *map(fx, xticks)])
    if xhi == xlo:
        xlo, xhi = xlo - 1, xhi + 1
    legend_w = 170 if len(series) > 1 else 0
    ml, mr, mt, mb = 62, 16 + legend_w, 30, 46
    pw, ph = width - ml - mr, height - mt - mb

    def px(x: float) -> float:
        return ml + (fx(x) - xlo) / (xhi - xlo) * pw

    def py(y: float) -> float:
        return mt + (1 - (y - ylo) / (yhi - ylo)) * ph

    out = [_open(width, height, title)]
    for t in yt:
        y = py(t)
        out.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + pw}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#444">{_label(t)}</text>')
    for t in xticks:
        if log_x and t <= 0:
            continue
        x = px(t)
        if x < ml - 0.5 or x > ml + pw + 0.5:
            continue
        out.append(f'<line x1="{x:.1f}" y1="{mt + ph}" x2="{x:.1f}" y2="{mt + ph + 4}" stroke="#888"/>')
        out.append(f'<text x="{x:.1f}" y="{mt + ph + 17}" text-anchor="middle" font-size="11" fill="#444">{_label(t)}</text>')
    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    out.append(f'<text x="{ml + pw / 2:.1f}" y="{height - 8}" text-anchor="middle" font-size="12" fill="#222">'
               f'{escape(xlabel)}{" (log scale)" if log_x else ""}</text>')
    out.append(f'<text transform="translate(14,{mt + ph / 2:.1f}) rotate(-90)" text-anchor="middle" font-size="12" '
               f'fill="#222">{escape(ylabel)}</text>')
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        keep = [(x, y, (s.lo or [None] * len(s.xs))[j], (s.hi or [None] * len(s.xs))[j])
                for j, (x, y) in enumerate(zip(s.xs, s.ys)) if _finite(x) and (not log_x or x > 0)]
        band = [(x, lo, hi) for x, _, lo, hi in keep if _finite(lo) and _finite(hi)]
        if len(band) > 1:
            poly = [f"{px(x):.1f},{py(hi):.1f}" for x, _, hi in band] + \
                   [f"{px(x):.1f},{py(lo):.1f}" for x, lo, _ in reversed(band)]
            out.append(f'<polygon points="{" ".join(poly)}" fill="{color}" fill-opacity="0.12" stroke="none"/>')
        for seg in _segments([(x, y) for x, y, _, _ in keep]):
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in seg)
            dash = ' stroke-dasharray="6,4"' if s.dashed else ""
            if len(seg) > 1:
                out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
            if s.markers and len(keep) <= 40:
                out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>' for x, y in seg]
        if legend_w:
            ly = mt + 8 + i * 18
            lx = width - legend_w + 4
            dash = ' stroke-dasharray="6,4"' if s.dashed else ""
            out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 22}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>')
            out.append(f'<text x="{lx + 28}" y="{ly + 4}" font-size="11" fill="#222">{escape(_short(s.name, 24))}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _segments(points: list[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    segs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if _finite(y):
            segs[-1].append((x, float(y)))  # type: ignore[arg-type]
        elif segs[-1]:
            segs.append([])
    return [s for s in segs if s]


@dataclass
class ForestRow:
    """One comparison: a label, the point estimate and its interval, and the verdict (colour)."""

    label: str
    point: float | None
    lo: float | None
    hi: float | None
    verdict: str = ""
    note: str = ""


def forest_chart(rows: Sequence[ForestRow], *, title: str, xlabel: str, percent: bool = True,
                 width: int = 760) -> str:
    """A forest plot: one row per comparison, its interval as a bar, the point as a dot, 0 marked."""
    vals = [v for r in rows for v in (r.point, r.lo, r.hi) if _finite(v)]
    if not vals:
        return _empty(title, width)
    ticks = nice_ticks(min([*vals, 0.0]), max([*vals, 0.0]))
    lo, hi = ticks[0], ticks[-1]
    label_w = min(300, 12 + 7 * max(len(r.label) for r in rows))
    ml, mr, mt, mb, rh = label_w, 190, 30, 44, 22
    pw = width - ml - mr
    height = mt + mb + rh * len(rows)

    def px(v: float) -> float:
        return ml + (v - lo) / (hi - lo) * pw

    out = [_open(width, height, title)]
    for t in ticks:
        x = px(t)
        out.append(f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{mt + rh * len(rows)}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{mt + rh * len(rows) + 16}" text-anchor="middle" font-size="11" '
                   f'fill="#444">{_label(t, percent)}</text>')
    x0 = px(0.0)
    out.append(f'<line x1="{x0:.1f}" y1="{mt - 4}" x2="{x0:.1f}" y2="{mt + rh * len(rows)}" stroke="#333"/>')
    for i, r in enumerate(rows):
        y = mt + rh * i + rh / 2
        if i % 2:
            out.append(f'<rect x="0" y="{mt + rh * i}" width="{width}" height="{rh}" fill="#f7f7f7" fill-opacity="0.6"/>')
        color = VERDICT_COLORS.get(r.verdict, "#555")
        out.append(f'<text x="{ml - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="12" fill="#222">'
                   f'{escape(_short(r.label, 42))}</text>')
        if _finite(r.lo) and _finite(r.hi):
            out.append(f'<line x1="{px(r.lo):.1f}" y1="{y:.1f}" x2="{px(r.hi):.1f}" y2="{y:.1f}" stroke="{color}" '
                       'stroke-width="2.5"/>')
            for end in (r.lo, r.hi):
                out.append(f'<line x1="{px(end):.1f}" y1="{y - 5:.1f}" x2="{px(end):.1f}" y2="{y + 5:.1f}" '
                           f'stroke="{color}" stroke-width="1.5"/>')
        if _finite(r.point):
            out.append(f'<circle cx="{px(r.point):.1f}" cy="{y:.1f}" r="4.5" fill="{color}"/>')
        text = interval_text(r.point, r.lo, r.hi, percent) + (f" {r.note}" if r.note else "")
        out.append(f'<text x="{width - mr + 10}" y="{y + 4:.1f}" font-size="11" fill="#222">{escape(text)}</text>')
    out.append(f'<text x="{ml + pw / 2:.1f}" y="{height - 8}" text-anchor="middle" font-size="12" fill="#222">'
               f'{escape(xlabel)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def interval_text(point: float | None, lo: float | None, hi: float | None, percent: bool = True) -> str:
    """'+3.2% [-1.0%, +7.5%]' (or absolute numbers with percent=False)."""
    f = (lambda v: f"{v:+.1%}") if percent else (lambda v: f"{v:+.4f}")
    p = f(point) if _finite(point) else "n/a"
    return p + (f" [{f(lo)}, {f(hi)}]" if _finite(lo) and _finite(hi) else "")


def _open(width: int, height: int, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" {FONT} role="img" aria-label="{escape(title)}">\n'
            f'<rect width="{width}" height="{height}" fill="#fff"/>\n'
            f'<text x="10" y="18" font-size="13" font-weight="600" fill="#111">{escape(title)}</text>')


def _empty(title: str, width: int) -> str:
    return _open(width, 60, title) + '\n<text x="10" y="44" font-size="12" fill="#666">no data</text>\n</svg>'


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"
