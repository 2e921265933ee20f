"""The report as one self-contained HTML file: styles inline, plots as PNG
``data:`` URIs, no scripts, no link or resource outside the file (the only
links are fragments of the table of contents). Readable on screen in light
and dark browsers (``prefers-color-scheme``) and printed (``@media print``)."""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from workstation.report.document import TITLES, Block, is_number, layout

STYLE = """
:root { color-scheme: light dark; --fg: #1a1a1a; --bg: #ffffff; --muted: #555555;
  --rule: #d0d0d0; --head: #eef2f6; --accent: #0072B2; --code: #f4f4f4; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e8e8e8; --bg: #16181b; --muted: #a8a8a8; --rule: #3a3d42;
    --head: #23272d; --accent: #56B4E9; --code: #23272d; } }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 62rem; padding: 1.5rem 1.25rem 4rem; color: var(--fg);
  background: var(--bg); font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto,
  "DejaVu Sans", sans-serif; }
h1 { font-size: 1.7rem; margin: 0 0 .3rem; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 .6rem; padding-bottom: .2rem;
  border-bottom: 2px solid var(--accent); }
h3 { font-size: 1.08rem; margin: 1.6rem 0 .4rem; }
p.meta { color: var(--muted); margin: 0 0 1rem; }
nav ol { columns: 2; margin: .4rem 0 1rem; padding-left: 1.4rem; }
a { color: var(--accent); }
table { border-collapse: collapse; margin: .4rem 0 1.1rem; width: 100%; font-size: .86rem; }
caption { text-align: left; font-weight: 600; padding: .2rem 0; }
th, td { border: 1px solid var(--rule); padding: .25rem .45rem; text-align: left;
  vertical-align: top; overflow-wrap: break-word; hyphens: none; }
td.long { overflow-wrap: anywhere; }
thead th { background: var(--head); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: .8rem 0 1.4rem; }
figure img { max-width: 100%; height: auto; background: #ffffff; border: 1px solid var(--rule);
  border-radius: 4px; }
figcaption { color: var(--muted); font-size: .85rem; }
pre { background: var(--code); padding: .5rem .7rem; border-radius: 4px; overflow-x: auto;
  font-size: .8rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.what { margin: .6rem 0 .1rem; color: var(--muted); font-size: .85rem; }
.summary { font-size: 1rem; }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5pt; color: #000; background: #fff; }
  nav { display: none; }
  a { color: #000; text-decoration: none; }
  h2, h3 { break-after: avoid; }
  tr, figure, pre { break-inside: avoid; }
  thead { display: table-header-group; }
  thead th { background: #eeeeee; }
}
"""


def render_html(content: dict[str, Any]) -> bytes:
    """The HTML bytes of the report (without its signature)."""
    blocks = layout(content)
    body = "\n".join(_block(b) for b in blocks)
    toc = "".join(f'<li><a href="#{key}">{escape(title.split(". ", 1)[1])}</a></li>'
                  for key, title in TITLES.items())
    who = content.get("prepared_by") or {}
    meta = (f"Model {escape(content['scope']['model']['ref'])} · created "
            f"{escape(content['created_at'][:19])} UTC · prepared by "
            f"{escape(who.get('name', '–'))} (key {escape(who.get('key_id', '–'))}) · "
            f"runs {escape(', '.join(str(r) for r in content['runs']['audit'] + content['runs']['probe']))}")
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="color-scheme" content="light dark">\n'
            f'<meta name="generator" content="workstation {escape(content["scope"]["workstation"]["version"])}">\n'
            f'<title>{escape(content["title"])}</title>\n<style>{STYLE}</style>\n</head>\n'
            f'<body>\n<header>\n<h1>{escape(content["title"])}</h1>\n<p class="meta">{meta}</p>\n'
            f'</header>\n<nav aria-label="Contents"><ol>{toc}</ol></nav>\n<main>\n{body}\n'
            f'</main>\n</body>\n</html>\n')
    return page.encode("utf-8")


def _block(b: Block) -> str:
    if b.kind in ("h2", "h3"):
        return f'<{b.kind} id="{escape(b.anchor)}">{escape(b.text)}</{b.kind}>'
    if b.kind == "p":
        cls = ' class="summary"' if b.anchor == "summary" else ""
        return f"<p{cls}>{escape(b.text)}</p>"
    if b.kind == "list":
        items = "".join(f"<li>{escape(i)}</li>" for i in b.items)
        return f"<h4>{escape(b.text)}</h4><ul>{items}</ul>" if b.text else f"<ul>{items}</ul>"
    if b.kind == "code":
        return (f'<p class="what">{escape(b.items[0])}</p><pre><code>{escape(b.text)}'
                f'</code></pre>')
    if b.kind == "figure":
        return _figure(b)
    return _table(b)


def _table(b: Block) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in b.headers)
    rows = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in b.rows)
    if not b.rows:
        rows = f'<tr><td colspan="{len(b.headers)}">none</td></tr>'
    return (f"<table><caption>{escape(b.text)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def _cell(text: str) -> str:
    if is_number(text):
        return f'<td class="num">{escape(text)}</td>'
    # hashes and paths may break anywhere; words only between words
    long = any(len(word) > 28 for word in text.split())
    return f'<td class="long">{escape(text)}</td>' if long else f"<td>{escape(text)}</td>"


def _figure(b: Block) -> str:
    assert b.plot is not None
    data = base64.b64encode(b.plot.png).decode("ascii")
    return (f'<figure id="{escape(b.plot.key)}"><img src="data:image/png;base64,{data}" '
            f'alt="{escape(b.plot.alt)}"><figcaption>{escape(b.plot.title)}. '
            f'{escape(b.plot.alt)}</figcaption></figure>')
