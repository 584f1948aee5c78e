"""Charts drawn on the server as inline SVG: no chart library, no script, readable at 360 px
(the page puts a text table beside each chart for screen readers)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

WIDTH, BAR, GAP, LABEL = 320, 14, 10, 96
ON_TIME, LATE, NONE = "#1b7f3b", "#b3261e", "#d9dee2"


def on_time_bars(facilities: list[dict[str, Any]], title: str) -> Markup:
    """One bar per facility: reports on time and late against the internal target."""
    rows = [f for f in facilities if f["reports"]] or facilities
    height = max(1, len(rows)) * (BAR + GAP) + GAP
    span = WIDTH - LABEL - 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
             f'width="100%" role="img" aria-labelledby="chart-title" class="chart">'
             f'<title id="chart-title">{escape(title)}</title>']
    for index, facility in enumerate(rows):
        y = GAP + index * (BAR + GAP)
        total = facility["reports"]
        on_time_width = round(span * facility["on_time"] / total) if total else 0
        late_width = round(span * facility["late"] / total) if total else 0
        parts.append(f'<text x="0" y="{y + BAR - 3}" font-size="11">'
                     f'{escape(facility["code"])}</text>')
        parts.append(f'<rect x="{LABEL}" y="{y}" width="{span}" height="{BAR}" '
                     f'fill="{NONE}"/>')
        if on_time_width:
            parts.append(f'<rect x="{LABEL}" y="{y}" width="{on_time_width}" height="{BAR}" '
                         f'fill="{ON_TIME}"/>')
        if late_width:
            parts.append(f'<rect x="{LABEL + on_time_width}" y="{y}" width="{late_width}" '
                         f'height="{BAR}" fill="{LATE}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated value is escaped or a number
