"""Charts as server-rendered SVG: sizes and positions are attributes (the page's CSP allows no inline
style), colours come from the stylesheet's classes, and every chart is an image with a text label."""

from __future__ import annotations

import math

from markupsafe import Markup, escape


def _svg(width: float, height: float, label: str, body: str, cls: str) -> Markup:
    return Markup(
        f'<svg class="{cls}" viewBox="0 0 {width:g} {height:g}" width="{width:g}" height="{height:g}" role="img"'
        f' aria-label="{escape(label)}" focusable="false" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>{body}</svg>"
    )


def confidence_meter(confidence: int, confirmed: bool = False) -> Markup:
    """Ten pips, as many filled as the confidence."""
    pips = []
    for i in range(10):
        state = "on" if i < confidence else "off"
        pips.append(f'<rect class="pip {state}" x="{i * 8}" y="0" width="6" height="10" rx="2"/>')
    label = f"confidence {confidence} of 10" + (", confirmed by you" if confirmed else "")
    return _svg(78, 10, label, "".join(pips), "meter" + (" confirmed" if confirmed else ""))


def freshness_ring(freshness: float, size: int = 28) -> Markup:
    """A ring filled to how much weight the belief still has (2^(-age / half-life))."""
    r = size / 2 - 3
    c = 2 * math.pi * r
    share = max(0.0, min(1.0, freshness))
    centre = size / 2
    body = (f'<circle class="ring-track" cx="{centre:g}" cy="{centre:g}" r="{r:.2f}" fill="none" stroke-width="4"/>'
            f'<circle class="ring-fill" cx="{centre:g}" cy="{centre:g}" r="{r:.2f}" fill="none" stroke-width="4"'
            f' stroke-dasharray="{c * share:.2f} {c:.2f}" stroke-linecap="round"'
            f' transform="rotate(-90 {centre:g} {centre:g})"/>')
    return _svg(size, size, f"{round(share * 100)}% fresh", body, "ring")


def decay_curve(half_life_days: float, age_days: float, width: int = 360, height: int = 120) -> Markup:
    """Weight over time, 2^(-t / half-life), with today marked and the half-life drawn."""
    span = max(3 * half_life_days, age_days * 1.25, 1.0)
    left, right, top, bottom = 34, 10, 10, 24
    w, h = width - left - right, height - top - bottom

    def x(days: float) -> float:
        return left + w * days / span

    def y(weight: float) -> float:
        return top + h * (1 - weight)

    points = " ".join(f"{x(span * i / 60):.1f},{y(2 ** (-(span * i / 60) / half_life_days)):.1f}" for i in range(61))
    now_w = 2 ** (-age_days / half_life_days)
    body = [
        f'<line class="axis" x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + h}"/>',
        f'<text class="tick" x="{left - 6}" y="{top + 4}" text-anchor="end">100%</text>',
        f'<text class="tick" x="{left - 6}" y="{y(0.5) + 4:.1f}" text-anchor="end">50%</text>',
        f'<line class="guide" x1="{left}" y1="{y(0.5):.1f}" x2="{x(half_life_days):.1f}" y2="{y(0.5):.1f}"/>',
        f'<line class="guide" x1="{x(half_life_days):.1f}" y1="{y(0.5):.1f}" x2="{x(half_life_days):.1f}"'
        f' y2="{top + h}"/>',
        f'<text class="tick" x="{x(half_life_days):.1f}" y="{height - 6}" text-anchor="middle">half-life</text>',
        f'<polyline class="curve" fill="none" points="{points}"/>',
        f'<circle class="now" cx="{x(age_days):.1f}" cy="{y(now_w):.1f}" r="5"/>',
        f'<text class="tick strong" x="{min(x(age_days) + 8, left + w - 24):.1f}"'
        f' y="{max(y(now_w) - 8, top + 10):.1f}">now</text>',
    ]
    label = (f"Weight over time: halves every {half_life_days:g} days; now at {round(now_w * 100)}% "
             f"after {age_days:.1f} days")
    return _svg(width, height, label, "".join(body), "curve-chart")


def histogram(counts: list[int], width: int = 250, height: int = 80) -> Markup:
    """How many beliefs have each confidence, 1 to 10."""
    top, bottom = 6, 20
    h = height - top - bottom
    most = max(counts) if any(counts) else 1
    step = width / 10
    bars = []
    for i, n in enumerate(counts):
        bar = 0 if n == 0 else max(2.0, h * n / most)
        cls = "bar high" if i >= 7 else "bar mid" if i >= 3 else "bar low"
        bars.append(f'<rect class="{cls}" x="{i * step + 3:.1f}" y="{top + h - bar:.1f}" width="{step - 6:.1f}"'
                    f' height="{bar:.1f}" rx="2"><title>confidence {i + 1}: {n}</title></rect>')
        bars.append(f'<text class="tick" x="{i * step + step / 2:.1f}" y="{height - 5}" text-anchor="middle">'
                    f"{i + 1}</text>")
    label = "Beliefs by confidence, 1 to 10: " + ", ".join(f"{i + 1}: {n}" for i, n in enumerate(counts))
    return _svg(width, height, label, "".join(bars), "histogram")


def _nice(most: float) -> float:
    """A round number at or above `most` for an axis' top (1, 2, 2.5, 5 x 10^n)."""
    if most <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(most))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= most)


def _short(n: float) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.3g}M"
    if n >= 1000:
        return f"{n / 1000:.3g}k"
    return f"{n:g}"


def _axes(left: float, top: float, w: float, h: float, scale: float) -> list[str]:
    body = [f'<line class="axis" x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}"/>']
    for frac in (0.5, 1.0):
        y = top + h * (1 - frac)
        body.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}"/>')
        body.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                    f"{_short(scale * frac)}</text>")
    return body


def stacked_days(days: list[str], labels: list[str], series: list[tuple[str, list[int]]], *, what: str,
                 width: int = 860, height: int = 200) -> Markup:
    """One bar per day, stacked by series (classes s0, s1, ... colour them); `labels` are the days' axis labels."""
    left, right, top, bottom = 40, 6, 10, 24
    w, h = width - left - right, height - top - bottom
    totals = [sum(values[i] for _, values in series) for i in range(len(days))]
    scale = _nice(max(totals, default=0))
    step = w / max(1, len(days))
    bar = max(2.0, min(34.0, step * 0.68))
    body = _axes(left, top, w, h, scale)
    every = max(1, math.ceil(len(days) / 16))
    for i in range(len(days)):
        x = left + i * step + (step - bar) / 2
        y = top + h
        for n, (name, values) in enumerate(series):
            value = values[i]
            if not value:
                continue
            seg = h * value / scale
            y -= seg
            body.append(f'<rect class="seg s{n}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{seg:.1f}">'
                        f"<title>{escape(labels[i])}: {escape(name)} {value:,}</title></rect>")
        if i % every == 0:
            body.append(f'<text class="tick" x="{x + bar / 2:.1f}" y="{height - 6}" text-anchor="middle">'
                        f"{escape(labels[i])}</text>")
    label = f"{what} per day, {labels[0] if labels else ''} to {labels[-1] if labels else ''}: " + ", ".join(
        f"{labels[i]} {totals[i]:,}" for i in range(len(days)) if totals[i])
    return _svg(width, height, label, "".join(body), "days-chart")


def usage_days(labels: list[str], tokens: list[tuple[int, int]], budget: int, *, per: str = "day",
               width: int = 860, height: int = 200) -> Markup:
    """Tokens per day (input below, output above), with the daily budget as a dashed line when there is one.
    per="week": a bar is a week, its height the week's average per day."""
    left, right, top, bottom = 44, 58 if budget else 6, 12, 24
    w, h = width - left - right, height - top - bottom
    totals = [a + b for a, b in tokens]
    scale = _nice(max([*totals, budget * 1.1 if budget else 0], default=0))
    step = w / max(1, len(labels))
    bar = max(2.0, min(34.0, step * 0.68))
    body = _axes(left, top, w, h, scale)
    every = max(1, math.ceil(len(labels) / 16))
    unit = " a day on average" if per == "week" else ""
    for i, (inp, out) in enumerate(tokens):
        x = left + i * step + (step - bar) / 2
        over = " over" if budget and inp + out > budget else ""
        hin, hout = h * inp / scale, h * out / scale
        if inp:
            body.append(f'<rect class="seg tin{over}" x="{x:.1f}" y="{top + h - hin:.1f}" width="{bar:.1f}"'
                        f' height="{hin:.1f}"><title>{escape(labels[i])}: {inp:,} input tokens{unit}</title></rect>')
        if out:
            body.append(f'<rect class="seg tout{over}" x="{x:.1f}" y="{top + h - hin - hout:.1f}" width="{bar:.1f}"'
                        f' height="{hout:.1f}"><title>{escape(labels[i])}: {out:,} output tokens{unit}</title>'
                        "</rect>")
        if i % every == 0:
            body.append(f'<text class="tick" x="{x + bar / 2:.1f}" y="{height - 6}" text-anchor="middle">'
                        f"{escape(labels[i])}</text>")
    if budget:
        y = top + h * (1 - budget / scale)
        body.append(f'<line class="budget" x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}"/>')
        body.append(f'<text class="tick strong" x="{left + w + 4}" y="{y - 2:.1f}">budget</text>')
        body.append(f'<text class="tick" x="{left + w + 4}" y="{y + 10:.1f}">{_short(budget)}/day</text>')
    label = (("Tokens per day" if per == "day" else "Average tokens per day, a week a bar")
             + f", {labels[0] if labels else ''} to {labels[-1] if labels else ''}"
             + (f", against a daily budget of {budget:,}" if budget else "") + ": "
             + ", ".join(f"{labels[i]} {totals[i]:,}" for i in range(len(labels)) if totals[i]))
    return _svg(width, height, label, "".join(body), "days-chart usage-chart")
