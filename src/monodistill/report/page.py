"""The report as one self-contained HTML page (figures inlined as data URIs), with the students' model-card
summaries and the run settings; it opens from disk, no server."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown

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
    """HTML of the report's Markdown (Python-Markdown with tables and fenced blocks), each image inlined
    from ``folder`` as a PNG data URI, so the page needs no other file."""
    rendered = markdown.markdown(text, extensions=["tables", "fenced_code"], output_format="html")

    def inline(match: re.Match[str]) -> str:
        path = folder / html.unescape(match.group(1))
        if not path.is_file():
            return match.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'

    return re.sub(r'src="([^":]+)"', inline, rendered)
