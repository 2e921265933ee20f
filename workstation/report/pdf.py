"""The report as PDF, built offline with reportlab (no browser): a title page,
page numbers in every page's footer, tables whose header row repeats on each
page and whose rows are never split across pages. Text is set in DejaVu Sans
(shipped inside matplotlib), so any Unicode a dataset holds prints."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import matplotlib
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import cm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (Image, KeepTogether, PageBreak, Paragraph, Preformatted,
                                SimpleDocTemplate, Spacer, Table, TableStyle)

from workstation.report.document import TITLES, Block, is_number, layout

MARGIN = 1.8 * cm
WIDTH = A4[0] - 2 * MARGIN
_FONTS = {"Report": "DejaVuSans.ttf", "Report-Bold": "DejaVuSans-Bold.ttf",
          "Report-Mono": "DejaVuSansMono.ttf"}


def _register_fonts() -> None:
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for name, file in _FONTS.items():
        if name not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont(name, str(folder / file)))


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("body", fontName="Report", fontSize=9.5, leading=13, alignment=TA_LEFT,
                          spaceAfter=5)
    return {
        "body": base,
        "title": ParagraphStyle("title", base, fontName="Report-Bold", fontSize=24, leading=30,
                                spaceAfter=14),
        "subtitle": ParagraphStyle("subtitle", base, fontSize=12, leading=17,
                                   textColor=colors.HexColor("#333333")),
        "h2": ParagraphStyle("h2", base, fontName="Report-Bold", fontSize=15, leading=19,
                             keepWithNext=1,
                             spaceBefore=10, spaceAfter=6, textColor=colors.HexColor("#0072B2")),
        "h3": ParagraphStyle("h3", base, fontName="Report-Bold", fontSize=11.5, leading=15,
                             keepWithNext=1,
                             spaceBefore=8, spaceAfter=4),
        "cell": ParagraphStyle("cell", base, fontSize=7.5, leading=9.5, spaceAfter=0),
        "number": ParagraphStyle("number", base, fontSize=7.5, leading=9.5, spaceAfter=0,
                                 alignment=TA_RIGHT),
        "head": ParagraphStyle("head", base, fontName="Report-Bold", fontSize=7.5, leading=9.5,
                               spaceAfter=0),
        "caption": ParagraphStyle("caption", base, fontName="Report-Bold", fontSize=8.5,
                                  keepWithNext=1,
                                  leading=11, spaceAfter=2, spaceBefore=4),
        "small": ParagraphStyle("small", base, fontSize=8, leading=10.5,
                                textColor=colors.HexColor("#444444")),
        "code": ParagraphStyle("code", base, fontName="Report-Mono", fontSize=7, leading=9,
                               backColor=colors.HexColor("#f2f2f2"), borderPadding=3),
    }


def render_pdf(content: dict[str, Any]) -> bytes:
    """The PDF bytes of the report (without its signature)."""
    # Binary streams: reportlab's ASCII85 text encoding of the images runs in
    # pure Python (its C accelerator is a separate package) and was a tenth
    # of a 100k-example report's build; binary is smaller and as valid.
    rl_config.useA85 = 0
    _register_fonts()
    styles = _styles()
    story = _title_page(content, styles) + [PageBreak()]
    for b in layout(content):
        made = _block(b, styles)
        story.extend(made if isinstance(made, list) else [made])
    buf = io.BytesIO()
    title = content["title"]
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN,
                            topMargin=MARGIN, bottomMargin=MARGIN + 0.4 * cm, title=title,
                            author=(content.get("prepared_by") or {}).get("name", ""),
                            subject=f"audit report of {content['scope']['model']['ref']}",
                            creator="workstation", invariant=True)
    doc.build(story, canvasmaker=_numbered(title))
    return buf.getvalue()


def _title_page(content: dict[str, Any], styles: dict[str, ParagraphStyle]) -> list[Any]:
    model = content["scope"]["model"]
    who = content.get("prepared_by") or {}
    runs = content["runs"]["audit"] + content["runs"]["probe"]
    lines = [f"Model <b>{escape(model['ref'])}</b>",
             f"SHA-256 {escape(model['sha256'])}",
             f"Datasets: {escape(', '.join(d['name'] for d in content['scope']['datasets']))}",
             f"Runs: {escape(', '.join(map(str, runs)))}",
             f"Created {escape(content['created_at'][:19])} UTC",
             f"Prepared and signed by {escape(who.get('name', '–'))} "
             f"(key {escape(who.get('key_id', '–'))})",
             f"Workstation {escape(content['scope']['workstation']['version'])}"]
    contents = "<br/>".join(escape(t) for t in TITLES.values())
    return ([Spacer(1, 4 * cm), Paragraph(escape(content["title"]), styles["title"])]
            + [Paragraph(line, styles["subtitle"]) for line in lines]
            + [Spacer(1, 1.2 * cm), Paragraph("<b>Contents</b>", styles["body"]),
               Paragraph(contents, styles["body"]), Spacer(1, 1 * cm),
               Paragraph("Check this file with <font name='Report-Mono'>workstation "
                         "verify-report FILE --trust KEY.pem</font>: one changed byte anywhere "
                         "is refused.", styles["small"])])


def _block(b: Block, styles: dict[str, ParagraphStyle]) -> Any:
    if b.kind == "h2":
        return Paragraph(escape(b.text), styles["h2"])
    if b.kind == "h3":
        return Paragraph(escape(b.text), styles["h3"])
    if b.kind == "p":
        return Paragraph(escape(b.text), styles["body"])
    if b.kind == "list":
        items = [Paragraph("• " + escape(i), styles["body"]) for i in b.items]
        return KeepTogether([Paragraph(escape(b.text), styles["caption"])] + items[:3]) \
            if len(items) <= 3 else [Paragraph(escape(b.text), styles["caption"])] + items
    if b.kind == "code":
        return KeepTogether([Paragraph(escape(b.items[0]), styles["small"]),
                             Preformatted(_wrap(b.text, 110), styles["code"])])
    if b.kind == "figure":
        return _figure(b, styles)
    return _table(b, styles)


def _wrap(text: str, width: int) -> str:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line + " \\")
            line = "    " + word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join(lines + [line])


def _figure(b: Block, styles: dict[str, ParagraphStyle]) -> Any:
    from PIL import Image as PILImage

    assert b.plot is not None
    with PILImage.open(io.BytesIO(b.plot.png)) as im:
        w, h = im.size
    width = min(WIDTH, 16 * cm)
    image = Image(io.BytesIO(b.plot.png), width=width, height=width * h / w)
    return KeepTogether([image, Paragraph(f"<b>{escape(b.plot.title)}.</b> "
                                          f"{escape(b.plot.alt)}", styles["small"])])


def _table(b: Block, styles: dict[str, ParagraphStyle]) -> Any:
    header = [Paragraph(escape(h), styles["head"]) for h in b.headers]
    rows = [[Paragraph(escape(c), styles["number" if is_number(c) else "cell"]) for c in row]
            for row in b.rows] or \
        [[Paragraph("none", styles["cell"])] + [""] * (len(b.headers) - 1)]
    table = Table([header] + rows, colWidths=_widths(b), repeatRows=1, hAlign="LEFT")
    table.setStyle(TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#bbbbbb")),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef4")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]))
    return [Paragraph(escape(b.text), styles["caption"]), table, Spacer(1, 4)]


def _widths(b: Block) -> list[float]:
    """Column widths that fit each column's longest word (so no word breaks
    inside) and share the rest of the page by each column's full text."""
    n = len(b.headers)
    columns = [[b.headers[k]] + [r[k] for r in b.rows if k < len(r)] for k in range(n)]
    pad = 7.0
    least = [min(max(_width(w, "Report-Bold") for w in " ".join(col).split() or [""]), 110) + pad
             for col in columns]
    natural = [min(max(_width(t, "Report-Bold") for t in col), 260) + pad for col in columns]
    natural = [max(a, b) for a, b in zip(least, natural)]
    if sum(least) >= WIDTH:
        return [WIDTH * w / sum(least) for w in least]
    room = sum(natural) - sum(least)
    share = 1.0 if room <= 0 else min(1.0, (WIDTH - sum(least)) / room)
    widths = [a + (b - a) * share for a, b in zip(least, natural)]
    spare = WIDTH - sum(widths)
    return [w + spare * w / sum(widths) for w in widths]


def _width(text: str, font: str) -> float:
    return pdfmetrics.stringWidth(text, font, 7.5)


def _numbered(title: str):
    """A canvas that writes 'title · page n of m' in each page's footer (two passes)."""

    class NumberedCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # noqa: N802 (reportlab's name)
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._footer(total)
                super().showPage()
            super().save()

        def _footer(self, total: int) -> None:
            self.setFont("Report", 7.5)
            self.setFillColor(colors.HexColor("#555555"))
            self.drawString(MARGIN, MARGIN * 0.6, title)
            self.drawRightString(A4[0] - MARGIN, MARGIN * 0.6,
                                 f"page {self._pageNumber} of {total}")

    return NumberedCanvas
