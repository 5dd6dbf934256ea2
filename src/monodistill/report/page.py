"""The report as one self-contained HTML page (figures inlined as data URIs), with the students' model-card
summaries and the run settings; it opens from disk, no server."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

CARD_SECTIONS = ("Model", "Downstream results")
"""Sections of a student's model card that the HTML report shows (its title line too)."""
PAGE_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:0.3em 0.6em}
th{background:#f2f2f2}td{text-align:right}td:first-child{text-align:left}img{max-width:100%;display:block}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:0.85em}details{margin:0.5em 0}"""


def card_summaries(cards: dict[str, Path]) -> dict[str, str]:
    """Model name -> the title, model and downstream-results sections of its monodistill model card."""
    summaries = {}
    for name, path in cards.items():
        if not path.is_file() or "monodistill" not in (text := path.read_text()):
            continue
        body = text.split("---", 2)[2] if text.startswith("---") else text  # drop the Hub front matter
        title = next((line for line in body.splitlines() if line.startswith("# ")), f"# {name}")
        if not title.startswith(f"# {name}:"):  # the card's own name is not the report's label
            title += f" ({name})"
        parts = re.split(r"^## ", body, flags=re.MULTILINE)[1:]
        kept = [f"### {part.strip()}" for part in parts if part.split("\n", 1)[0].strip() in CARD_SECTIONS]
        summaries[name] = "\n\n".join([f"## Model card: {title.removeprefix('# ')}", *kept])
    return summaries


def render_html(sections: list[str], output: Path, cards: dict[str, str], settings: list[Path]) -> str:
    """The report as one self-contained HTML page: figures inlined from ``output`` as PNG data URIs."""
    body = [markdown_to_html("\n".join(sections), output)]
    body += [markdown_to_html(card, output) for card in cards.values()]
    if settings:
        body.append("<h2>Run settings</h2>")
        for path in settings:
            body.append(
                f"<details><summary>{html.escape(str(path))}</summary>"
                f"<pre>{html.escape(path.read_text())}</pre></details>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>monodistill report</title>\n'
        f"<style>{PAGE_STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def markdown_to_html(text: str, folder: Path) -> str:
    """HTML for the Markdown this module writes: headings, pipe tables, images (inlined from ``folder``),
    fenced blocks and paragraphs."""
    out: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            end = next((i for i in range(index + 1, len(lines)) if lines[i].startswith("```")), len(lines))
            out.append(f"<pre>{html.escape(chr(10).join(lines[index + 1 : end]))}</pre>")
            index = end + 1
            continue
        if line.startswith("|"):
            end = next((i for i in range(index, len(lines)) if not lines[i].startswith("|")), len(lines))
            out.append(_table_html(lines[index:end]))
            index = end
            continue
        if heading := re.match(r"^(#{1,6}) (.*)", line):
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline_html(heading.group(2))}</h{level}>")
        elif image := re.match(r"^!\[(.*)\]\((.*)\)$", line.strip()):
            data = base64.b64encode((folder / image.group(2)).read_bytes()).decode()
            out.append(f'<img src="data:image/png;base64,{data}" alt="{html.escape(image.group(1))}">')
        elif line.strip():
            out.append(f"<p>{_inline_html(line)}</p>")
        index += 1
    return "\n".join(out)


def _table_html(rows: list[str]) -> str:
    cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]
    body = [row for row in cells[1:] if not all(re.fullmatch(r":?-+:?", cell) for cell in row)]
    head = "".join(f"<th>{_inline_html(cell)}</th>" for cell in cells[0])
    lines = ["<tr>" + "".join(f"<td>{_inline_html(cell)}</td>" for cell in row) + "</tr>" for row in body]
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(lines) + "\n</tbody>\n</table>"


def _inline_html(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
