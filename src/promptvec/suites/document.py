"""A tiny document model rendered to both Markdown and self-contained HTML, so the two reports
always say the same thing."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class TableBlock:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    path: Path  # PNG beside the report
    caption: str


Block = Heading | Paragraph | TableBlock | Figure  # what a report is made of


def save_figure(fig, path: Path, **savefig: object) -> Path:
    """Write a matplotlib figure as a PNG at exactly ``path``, atomically and only over a regular file
    (never through a link or onto a device, never ``<folder>.png`` for a folder), then close it."""
    import io

    import matplotlib.pyplot as plt

    from promptvec.io import atomic_write_bytes

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", **savefig)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, block: Block) -> None:
        self.blocks.append(block)

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for b in self.blocks:
            if isinstance(b, Heading):
                lines += ["#" * b.level + " " + b.text, ""]
            elif isinstance(b, Paragraph):
                lines += [b.text, ""]
            elif isinstance(b, TableBlock):
                if b.caption:
                    lines += [f"*{b.caption}*", ""]
                lines.append("| " + " | ".join(b.header) + " |")
                lines.append("|" + "|".join("---" for _ in b.header) + "|")
                lines += ["| " + " | ".join(row) + " |" for row in b.rows]
                lines.append("")
            elif isinstance(b, Figure):
                lines += [f"![{b.caption}]({b.path.name})", "", f"*{b.caption}*", ""]
        return "\n".join(lines)

    def html(self) -> str:
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>",
                 "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
                 "line-height:1.45;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}"
                 "th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}th:first-child,td:first-child"
                 "{text-align:left}th{background:#f3f3f3}caption{caption-side:top;text-align:left;"
                 "font-style:italic;padding:4px 0}img{max-width:100%}figure{margin:1em 0 2em}"
                 "figcaption{font-style:italic;color:#555}code{background:#f3f3f3;padding:0 3px}</style>"
                 "</head><body>", f"<h1>{html.escape(self.title)}</h1>"]
        for b in self.blocks:
            if isinstance(b, Heading):
                parts.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
            elif isinstance(b, Paragraph):
                parts.append(f"<p>{_inline(b.text)}</p>")
            elif isinstance(b, TableBlock):
                parts.append("<table>")
                if b.caption:
                    parts.append(f"<caption>{_inline(b.caption)}</caption>")
                parts.append("<tr>" + "".join(f"<th>{_inline(h)}</th>" for h in b.header) + "</tr>")
                for row in b.rows:
                    parts.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>")
                parts.append("</table>")
            elif isinstance(b, Figure):
                data = base64.b64encode(b.path.read_bytes()).decode()
                parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(b.caption)}'>"
                             f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")
        parts.append("</body></html>")
        return "\n".join(parts)


def _inline(text: str) -> str:
    """Escape, then render **bold** and `code` (the only inline Markdown the reports use)."""
    out = html.escape(text)
    while "**" in out and out.count("**") >= 2:
        out = out.replace("**", "<b>", 1).replace("**", "</b>", 1)
    while out.count("`") >= 2:
        out = out.replace("`", "<code>", 1).replace("`", "</code>", 1)
    return out
