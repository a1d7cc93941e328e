"""The report's pages: one `Page` type, and the typesetter that lays pages out on A4 and writes the PDF
(through runio's one atomic writer). The figures and numbers behind them: report/figures.py.

Every page builder in the package returns `Page`s: problems 1-4 (visualize.py), problem 5
(mnist/problem5.py) and CS180 project 5 (cs180/parta_pages.py, cs180/partb_pages.py).
visualize.py collects them and calls `write_report`.

A page is a title, a list of images drawn top to bottom at the page's width (FIG_W: a figure made
FIG_W inches wide prints at its own font sizes), each a PNG path or a `Figure` (the path with its alt
text and its caption, printed under it; a GIF is an animation, shown on the website and named on
paper), and text blocks: ('answer', paragraph), the plain answers, set first in a shaded box; ('text',
paragraph), wrapped to the page; or ('table', preformatted lines) in monospace. An image that does
not fit moves to the next page, text that does not fit continues on a "(continued)" page; images are
never shrunk to make room for text.
A page's text or caption may name the page another section is printed on: page_ref('Problem 5') is
filled in with "page 6" or "pages 6-7" once the report is laid out (resolve_references lays it out again
until the numbers hold), so such a sentence cannot drift when a section grows or moves.
The same pages make the website (report/site.py): one source for both; there fill_references fills a
reference otherwise (a link to the section).
"""
from __future__ import annotations

import functools
import os
import re
from typing import NamedTuple

import matplotlib
import PIL.Image

matplotlib.use("Agg")  # writes files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.font_manager import FontProperties, findfont, get_font  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from runio.files import metadata, replacing_all  # noqa: E402



# ============================================================== pages
class Figure(NamedTuple):
    """One image of a page: its file, the text that stands for it where it cannot be seen (alt: what it
    shows) and the caption printed under it, in the PDF and on the website alike. A .gif is an animation:
    shown on the website, named under the page's text on paper. os.fspath(figure) is its path."""

    path: str
    alt: str = ""
    caption: str = ""

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    @property
    def animated(self) -> bool:
        return os.fspath(self.path).lower().endswith(".gif")


def as_figure(image, title: str = "") -> Figure:
    """A page's image entry (a path or a Figure) as a Figure whose alt is never empty: where none is given,
    one made from the page's title and the file's name."""
    fig = image if isinstance(image, Figure) else Figure(os.fspath(image))
    if fig.alt.strip():
        return fig
    name = os.path.splitext(os.path.basename(fig.path))[0].replace("_", " ")
    return fig._replace(alt=f"{'Animation' if fig.animated else 'Figure'} '{name}' of the section '{title}'")


class Page(NamedTuple):
    """One page of the report: a title, images to show (paths or Figures, drawn top to bottom at the page's
    width) and text blocks: ('answer', paragraph) the plain answers, drawn first, above the images, in
    a shaded box (the text up to the first colon in bold); ('text', paragraph) wrapped to the page; or
    ('table', preformatted lines) in monospace."""

    title: str
    images: list
    blocks: list

    @classmethod
    def of_text(cls, title: str, images: list, text: str, answers: str = "") -> "Page":
        """A page whose answers and text are paragraphs separated by blank lines."""
        return cls(title, list(images), text_blocks(answers, "answer") + text_blocks(text))

    @property
    def text(self) -> str:
        """All text blocks, paragraphs separated by blank lines (what a CLI prints)."""
        return "\n\n".join(t for _, t in self.blocks)

    @property
    def answers(self) -> list:
        return [t for k, t in self.blocks if k == "answer"]

    @property
    def figures(self) -> list:
        """Every image as a Figure with its alt text (as_figure)."""
        return [as_figure(i, self.title) for i in self.images]

    @property
    def paths(self) -> list:
        """Every image's path, as a string."""
        return [os.fspath(i) for i in self.images]


def text_blocks(text: str, kind: str = "text") -> list:
    """Paragraphs separated by blank lines -> [(kind, paragraph), ...]."""
    return [(kind, p.strip()) for p in str(text).split("\n\n") if p.strip()]


PAGE_W, PAGE_H, MARGIN = 8.27, 11.69, 0.45  # A4, inches
FIG_W = PAGE_W - 2 * MARGIN  # every image is drawn this wide: a figure made this wide prints at its own font sizes
TITLE_H, GAP, BOX_PAD, SECTION_GAP = 0.45, 0.1, 0.07, 0.25  # inches
POINTS = {"answer": 9.0, "text": 8.5, "table": 7.5, "caption": 7.5}  # every font on the page is 7 pt or more
LEADING = {"answer": 1.3, "text": 1.3, "table": 1.25, "caption": 1.25}


@functools.lru_cache(maxsize=None)
def _advance(char: str, bold: bool) -> float:
    """Width of `char` at 1 pt in DejaVu Sans, in points (kerning ignored: under 1 % on a line)."""
    font = get_font(findfont(FontProperties(weight="bold" if bold else "normal")))
    font.set_size(100, 72)
    return font.load_char(ord(char)).linearHoriAdvance / 65536 / 100


def text_width(text: str, pt: float, bold: bool = False) -> float:
    """Printed width of `text` in inches."""
    return sum(_advance(c, bold) for c in text) * pt / 72


def wrap(text: str, pt: float, width: float, first_indent: float = 0.0) -> list:
    """Greedy word wrap to `width` inches by measured width; the first line starts `first_indent` in."""
    lines, line, room = [], "", width - first_indent
    for word in text.split():
        trial = f"{line} {word}" if line else word
        if line and text_width(trial, pt) > room:
            lines.append(line)
            line, room = word, width
        else:
            line = trial
    return lines + [line] if line else lines


def line_height(kind: str) -> float:
    return 4.0 / 72 if kind == "gap" else POINTS[kind] * LEADING[kind] / 72


def answer_lead(text: str) -> tuple:
    """(lead, rest) of an answer: the text up to its first colon, set in bold, when that is a short label
    ('Diversity: ...'); ('', text) otherwise."""
    head, colon, rest = text.partition(": ")
    return (head + ":", rest) if colon and len(head) <= 60 else ("", text)


def layout_blocks(blocks: list) -> list:
    """Blocks -> [(kind, line, lead)] wrapped to the page width, with ('gap', '', '') between blocks.
    `lead` is the bold text that opens the first line of an answer ('' elsewhere)."""
    lines = []
    for kind, text in blocks:
        if kind == "table":
            lines += [("table", line, "") for line in text.splitlines()]
        else:
            lead, text = answer_lead(text) if kind == "answer" else ("", text)
            indent = text_width(lead + " ", POINTS[kind], bold=True) if lead else 0.0
            wrapped = wrap(text, POINTS[kind], FIG_W - (2 * BOX_PAD if kind == "answer" else 0), indent) or [""]
            lines += [(kind, line, lead if i == 0 else "") for i, line in enumerate(wrapped)]
        lines.append(("gap", "", ""))
    return lines


def render_page(page: Page) -> list:
    """One page (and its continuations) as matplotlib figures; see render_pages."""
    return render_pages([page])


def render_pages(pages: list, flow: bool = False) -> list:
    """Pages as matplotlib figures (A4 sheets): each page's title, its answers, then its images at the
    page's width, then its text (layout_sheets), with every page reference filled in with the number of
    the sheet it names (resolve_references)."""
    _, sheets = resolve_references(pages, flow)
    return [draw_sheet(ops) for ops in sheets.ops]


class Sheets(NamedTuple):
    """The layout of a report: per sheet, what to draw where; per page, the sheets it is printed on."""

    ops: list  # per sheet, a list of (what, y, a, b): ('title', y, text, ''), ('answers', y, lines, ''),
    #            ('image', y, path, drawn height) or a line (kind, y, text, bold lead); y in inches from the bottom
    spans: list  # per page, (first, last) sheet index (from 0) it is printed on, continuations included


def layout_sheets(pages: list, flow: bool = False) -> Sheets:
    """Where everything goes: each page's title, its answers, then its images at the page's width, then its
    text. An image that does not fit below what is already on the sheet moves to the top of the next sheet, and
    the text waits for it there; the page's last image, below another, moves too when the paragraph that
    follows it (its explanation) would not fit below it but both fit on a sheet; text that does not fit goes on
    "(continued)" sheets, a paragraph whole where it fits on one sheet (no caption split across a break). Images are never shrunk to make room for text (their fonts would shrink with
    them); only an image taller than a whole sheet is scaled down.

    flow=False starts every page on a new sheet. flow=True starts a page on the sheet the previous one
    ended on when its title, answers and first image (or first lines of text) fit below it, so that
    two short sections share a sheet."""
    sheets, spans, y = [], [], 0.0

    def new_sheet() -> float:
        sheets.append([])
        return PAGE_H - MARGIN

    for page in pages:
        answers = layout_blocks([b for b in page.blocks if b[0] == "answer"])
        body = layout_blocks([b for b in page.blocks if b[0] != "answer"] + animation_notes(page))
        images, title = [f for f in page.figures if not f.animated], page.title
        if not sheets or not flow or start_height(answers, images, body) > y - MARGIN - SECTION_GAP:
            y = new_sheet()
        elif y < PAGE_H - MARGIN:
            y -= SECTION_GAP
        first = len(sheets) - 1
        while True:
            ops = sheets[-1]
            ops.append(("title", y, title, ""))
            y -= TITLE_H
            placed_any, deferred = bool(answers), []
            if answers:
                ops.append(("answers", y, answers, ""))
                y, answers = y - answers_height(answers) - GAP, []
            placed_image = False
            for i, image in enumerate(images):
                caption = caption_lines(image)
                h = image_height(image.path, caption_height(caption))
                need = h + caption_height(caption)
                if i == len(images) - 1 and placed_image and body and \
                        need + GAP + paragraph_height(body) <= PAGE_H - 2 * MARGIN - TITLE_H:
                    need += GAP + paragraph_height(body)  # the last figure keeps the paragraph that explains it
                if deferred or need > y - MARGIN + 1e-9:
                    deferred.append(image)
                    continue
                ops.append(("image", y, image.path, h))
                y -= h
                for line in caption:
                    ops.append(("caption", y, line, ""))
                    y -= line_height("caption")
                y -= GAP
                placed_any = placed_image = True
            while body and body[0][0] == "gap" and not placed_any:
                body.pop(0)  # no blank space at the top of a sheet
            while body and not deferred and (line_height(body[0][0]) <= y - MARGIN or not placed_any):
                # text never runs ahead of a figure moved to the next sheet; at least one line a sheet
                if placed_any and body[0][0] != "gap" and not paragraph_fits(body, y):
                    break  # a paragraph that fits a sheet is not split: it starts the next one
                kind, line, lead = body.pop(0)
                ops.append((kind, y, line, lead))
                y -= line_height(kind)
                placed_any = True
            if all(kind == "gap" for kind, _, _ in body):
                body = []  # only the space after the last paragraph is left: no "(continued)" sheet for it
            images = deferred
            if not images and not body:
                break
            y, title = new_sheet(), page.title + " (continued)"
        spans.append((first, len(sheets) - 1))
    return Sheets(sheets, spans)


def paragraph_height(body: list) -> float:
    """Height of the paragraph that opens `body` (its lines up to the first gap)."""
    end = next((i for i, (kind, _, _) in enumerate(body) if kind == "gap"), len(body))
    return sum(line_height(kind) for kind, _, _ in body[:end])


def paragraph_fits(body: list, y: float) -> bool:
    """Whether the paragraph opening `body` fits whole below y, or could not fit whole on any sheet either
    (then it is split where the sheet ends)."""
    h = paragraph_height(body)
    return h <= y - MARGIN + 1e-9 or h > PAGE_H - 2 * MARGIN - TITLE_H


def draw_sheet(ops: list):
    """One sheet of layout_sheets as an A4 matplotlib figure."""
    fig = plt.figure(figsize=(PAGE_W, PAGE_H))
    for what, y, a, b in ops:
        if what == "title":
            fig.text(MARGIN / PAGE_W, y / PAGE_H, a, fontsize=13, weight="bold", va="top")
        elif what == "answers":
            draw_answers(fig, a, y)
        elif what == "image":
            w = FIG_W * b / natural_height(a)
            ax = fig.add_axes([(PAGE_W - w) / 2 / PAGE_W, (y - b) / PAGE_H, w / PAGE_W, b / PAGE_H])
            ax.imshow(plt.imread(a), interpolation="antialiased")
            ax.axis("off")
        else:
            draw_line(fig, what, a, b, y)
    return fig


# ============================================================== page references
REFERENCE = re.compile(r"\{page of ([^{}]+)\}")


def page_ref(key: str) -> str:
    """A reference, for a page's text or caption, to the page(s) of the section `key` names (its title up
    to the first colon, e.g. 'Problem 5', or its whole title). The PDF prints "page 6" or "pages 6-7" in its
    place once the report is laid out (resolve_references); unfilled, it reads '{page of Problem 5}'.
    fill_references fills it otherwise (the website: a link to the section)."""
    if not key.strip() or set("{}") & set(key):
        raise ValueError(f"a page reference names a section title without braces, not {key!r}")
    return "{page of " + key.strip() + "}"


def fill_references(text: str, fill) -> str:
    """`text` with every page_ref(key) replaced by fill(key)."""
    return REFERENCE.sub(lambda m: fill(m.group(1).strip()), text)


def section_key(title: str) -> str:
    """What a page_ref names a page by: its title up to the first colon ('Problem 5: MNIST' -> 'Problem 5')."""
    return title.partition(":")[0].strip()


def sheets_of(key: str, pages: list, spans: list):
    """(first, last) sheet number (from 1) of the pages that `key` names (section_key or whole title), or None."""
    hits = [s for p, s in zip(pages, spans) if key in (section_key(p.title), p.title.strip())]
    return (min(a for a, _ in hits) + 1, max(b for _, b in hits) + 1) if hits else None


def page_numbers(span) -> str:
    """'page 6', 'pages 6-7', or what stands for a section the report does not hold."""
    if span is None:
        return "no page (not in this report)"
    return f"page {span[0]}" if span[0] == span[1] else f"pages {span[0]}-{span[1]}"


def with_references(page: Page, fill) -> Page:
    """The page with every reference in its text blocks and captions replaced by fill(key)."""
    blocks = [(kind, fill_references(text, fill)) for kind, text in page.blocks]
    images = [i._replace(caption=fill_references(i.caption, fill)) if isinstance(i, Figure) else i for i in page.images]
    return page._replace(blocks=blocks, images=images)


def resolve_references(pages: list, flow: bool = False, passes: int = 4) -> tuple:
    """(pages with their page_refs filled in with sheet numbers, their Sheets). The numbers are known only
    after layout, and filling them in can move text, so the pages are laid out again until the numbers
    stop changing (two passes, unless a filled number moves a section; at most `passes`)."""
    texts = [t for p in pages for t in [*(t for _, t in p.blocks), *(f.caption for f in p.figures)]]
    if not any(REFERENCE.search(t) for t in texts):
        return pages, layout_sheets(pages, flow)
    spans = None
    for _ in range(passes):
        filled = [with_references(p, lambda key: page_numbers(sheets_of(key, pages, spans) if spans else (0, 0)))
                  for p in pages]
        sheets = layout_sheets(filled, flow)
        if sheets.spans == spans:
            break
        spans = sheets.spans
    return filled, sheets



def natural_height(path: str) -> float:
    """An image's height in inches when drawn FIG_W wide (read from its header: the layout asks this often)."""
    stat = os.stat(path)
    w, h = _image_size(os.fspath(path), stat.st_mtime_ns, stat.st_size)
    return FIG_W * h / w


@functools.lru_cache(maxsize=256)
def _image_size(path: str, mtime_ns: int, size: int) -> tuple:
    """(width, height) in pixels of the image file at `path` as it was at (mtime_ns, size)."""
    with PIL.Image.open(path) as im:
        return im.size


def image_height(path: str, below: float = 0.0) -> float:
    """Its drawn height: natural, unless taller than a whole sheet below a title (less `below`, its caption's
    height)."""
    return min(natural_height(path), PAGE_H - 2 * MARGIN - TITLE_H - below)


def caption_lines(image: Figure) -> list:
    """A figure's caption wrapped to the page's width (none: [])."""
    return wrap(image.caption, POINTS["caption"], FIG_W) if image.caption else []


def caption_height(lines: list) -> float:
    return len(lines) * line_height("caption")


def animation_notes(page: Page) -> list:
    """Text blocks that name the page's animations on paper, with their captions: the website shows them."""
    def words(f: Figure) -> str:
        said = f.caption or f.alt
        return said[len("Animation. "):] if said.startswith("Animation. ") else said
    return [("text", f"Animation ({os.path.basename(f.path)}, beside the figures on the report's website): "
                     + words(f)) for f in page.figures if f.animated]


def start_height(answers: list, images: list, body: list) -> float:
    """What must fit below the previous section for a page to start on the same sheet: its title, its
    answers, and its first image, or its first four lines of text."""
    h = TITLE_H + (sum(line_height(k) for k, _, _ in answers) + 2 * BOX_PAD + GAP if answers else 0.0)
    if images:
        below = caption_height(caption_lines(images[0]))
        return h + image_height(images[0].path, below) + below
    return h + sum(line_height(k) for k, _, _ in body[:4])


def answers_height(lines: list) -> float:
    """Height of the answers' shaded box (draw_answers), without the GAP below it."""
    while lines and lines[-1][0] == "gap":
        lines = lines[:-1]
    return sum(line_height(k) for k, _, _ in lines) + 2 * BOX_PAD


def draw_answers(fig, lines: list, y: float) -> float:
    """The answers in a shaded box from y (inches from the bottom) down; returns the y below it."""
    while lines and lines[-1][0] == "gap":
        lines = lines[:-1]
    h = answers_height(lines)
    fig.patches.append(Rectangle((MARGIN / PAGE_W, (y - h) / PAGE_H), FIG_W / PAGE_W, h / PAGE_H,
                                 transform=fig.transFigure, facecolor="#eaf1f8", edgecolor="#0072B2", lw=0.6))
    yy = y - BOX_PAD
    for kind, line, lead in lines:
        draw_line(fig, kind, line, lead, yy, x=MARGIN + BOX_PAD)
        yy -= line_height(kind)
    return y - h - GAP


def draw_line(fig, kind: str, line: str, lead: str, y: float, x: float = MARGIN):
    if kind == "gap":
        return
    pt = POINTS[kind]
    family = "monospace" if kind == "table" else "sans-serif"
    if lead:
        fig.text(x / PAGE_W, y / PAGE_H, lead, fontsize=pt, weight="bold", va="top")
        x += text_width(lead + " ", pt, bold=True)
    fig.text(x / PAGE_W, y / PAGE_H, line, fontsize=pt, va="top", family=family,
             color="#333333" if kind == "caption" else "black")


def write_report(pages: list, path: str, flow: bool = False) -> int:
    """The pages as a PDF at `path`, atomically; flow: let short sections share a sheet (render_pages).
    Returns the number of sheets printed."""
    sheets = []

    def write(tmp):
        with PdfPages(tmp, metadata=metadata(".pdf")) as pdf:  # signed, and no timestamp: same input, same file
            for fig in render_pages(pages, flow):
                pdf.savefig(fig)
                plt.close(fig)
                sheets.append(1)

    with replacing_all([path], ours_only=True) as (tmp,):
        write(tmp)
    return len(sheets)
