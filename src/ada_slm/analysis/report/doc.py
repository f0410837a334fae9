"""The report as a document: a list of blocks (heading, paragraph, table, image) rendered as Markdown (report.md)
and as a self-contained HTML page with the images embedded (report.html), and the number formats of its cells."""

from __future__ import annotations

import base64
import html
import math
import textwrap
from pathlib import Path

from ada_slm.stats import contrasts


# ----------------------------------------------------------------------------------------- formatting
def f4(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def shorten(text: str, width: int) -> str:
    """`text` cut to `width` characters, ending in "…" where it was cut (never cut silently)."""
    return text if len(text) <= width else text[: width - 1] + "…"


NO_CI = "no CI: one run"  # what a cell says where an interval needs a second run


def ci4(iv: contrasts.Interval | None) -> str:
    """Mean [95 % CI]; a proportion's interval (iv.bounded) is cut at [0, 1] and marked so."""
    if iv is None or math.isnan(iv.mean):
        return "—"
    if not (math.isfinite(iv.low) and math.isfinite(iv.high)):
        return f"{iv.mean:.4f} ({NO_CI})"
    low, high = (max(0.0, iv.low), min(1.0, iv.high)) if iv.bounded else (iv.low, iv.high)
    mark = " (clipped to [0, 1])" if (low, high) != (iv.low, iv.high) else ""
    return f"{iv.mean:.4f} [{low:.4f}, {high:.4f}]{mark}"


def signed(iv: contrasts.Interval) -> str:
    if not (math.isfinite(iv.low) and math.isfinite(iv.high)):
        return f"{iv.mean:+.4f} ({NO_CI} per arm)"
    return f"{iv.mean:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]"


def components(vc: contrasts.VarianceComponents | None, run_level: bool) -> str:
    """'seed SD / item SD' of one arm: '—' where there is none (one run), the seed SD alone for a run-level
    quantity (one number per run: no items, so no item spread)."""
    if vc is None:
        return "—"
    return f"{vc.seed_sd:.4f} / —" if run_level else f"{vc.seed_sd:.4f} / {vc.item_sd:.4f}"


# ----------------------------------------------------------------------------------------- the report
class Doc:
    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[str]]):
        self.blocks.append(("table", header, rows))

    def image(self, path: Path, alt: str):
        self.blocks.append(("img", path, alt))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "table":
                out.append("| " + " | ".join(b[1]) + " |")
                out.append("|" + "|".join("---" for _ in b[1]) + "|")
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in b[2]]
            elif b[0] == "img":
                out.append(f"![{b[2]}]({b[1].name})")
            out.append("")
        return "\n".join(out)

    def plain(self, width: int) -> str:
        """The document for a terminal of `width` columns: headings and paragraphs wrapped, each table row as a
        block — its first cell, then "column: cell" lines — so nothing wraps a row over many lines. Images are
        named, not drawn."""

        out = []
        for b in self.blocks:
            if b[0] == "h":
                out += ["", textwrap.fill(b[2], width).upper() if b[1] <= 2 else textwrap.fill(b[2], width)]
            elif b[0] == "p":
                out.append(textwrap.fill(b[1].replace("**", ""), width))
            elif b[0] == "table":
                for row in b[2]:
                    out.append(textwrap.fill(row[0], width))
                    for head, cell in zip(b[1][1:], row[1:], strict=True):
                        out.append(
                            textwrap.fill(f"{head}: {cell}", width, initial_indent="  ", subsequent_indent="    ")
                        )
            elif b[0] == "img":
                out.append(f"[plot: {b[2]} — in the HTML report]")
            out.append("")
        return "\n".join(out)

    def html(self, title: str) -> str:
        parts = [
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
            "<style>body{font-family:system-ui,sans-serif;max-width:1600px;margin:2em auto;padding:0 1.5em;"
            "line-height:1.45}.wide{overflow-x:auto}table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child"
            "{text-align:left}th{background:#f3f3f3}img{max-width:100%}code{background:#f6f6f6}</style>"
            "</head><body>",
        ]
        for b in self.blocks:
            if b[0] == "h":
                parts.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
            elif b[0] == "p":  # **x** is bold in the Markdown: the same in the page
                text = html.escape(b[1]).replace(chr(10), "<br>")
                parts.append(
                    "<p>"
                    + "".join(f"<strong>{part}</strong>" if i % 2 else part for i, part in enumerate(text.split("**")))
                    + "</p>"
                )
            elif b[0] == "table":
                head = "".join(f"<th>{html.escape(c)}</th>" for c in b[1])
                body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in b[2])
                parts.append(
                    f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
                )
            elif b[0] == "img":
                data = base64.b64encode(b[1].read_bytes()).decode()
                parts.append(f"<p><img alt='{html.escape(b[2])}' src='data:image/png;base64,{data}'></p>")
        parts.append("</body></html>")
        return "\n".join(parts)


fmt_p = contrasts.format_p


def mean_sd(iv: contrasts.Interval | None, vc: contrasts.VarianceComponents | None) -> str:
    if iv is None or math.isnan(iv.mean):
        return "—"
    return f"{iv.mean:.3f}" + (f" ± {vc.seed_sd:.3f}" if vc is not None else "")


def ratio_ci(c: contrasts.Comparison) -> str:
    """× with its 95 % CI — never a bare ratio."""
    return f"{c.ratio[0]:.2f}× [{c.ratio[1]:.2f}, {c.ratio[2]:.2f}]" if c.ratio else c.ratio_note
