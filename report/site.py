"""The report as a static website, from the same `Page`s as the PDF (report/pages.py): one source, two
outputs.

    write_site(pages, "site", "CS180 project 5 on MNIST")   # site/index.html and site/figures/*

index.html holds a table of contents, then one section per page in order: its title, its plain answers
(the 'answer' blocks, in a shaded box as on paper), its figures and animations (copied beside it into
figures/, each with its alt text and caption), then its text and tables. No script, no font or style
from the network: it opens from disk and any static host can serve the folder. Dark text on white,
one column at most 52 em wide; images scale to the width and tables scroll inside their own box, so a
phone 390 px wide never scrolls the page sideways (tests/test_site.py checks that in a real browser).
Every file goes through runio's one atomic writer, as one set, and none replaces a file of the user's.
"""
from __future__ import annotations

import html
import os
import re
import shutil
from typing import NamedTuple

from PIL import Image

from runio.errors import OutputError
from runio.files import MARK, ours, replacing_all

from .pages import Page, answer_lead, fill_references, section_key

FIGURES = "figures"  # the images' folder, beside index.html

STYLE = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { margin: 0; background: #ffffff; color: #1b1b1b;
       font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 52em; margin: 0 auto; padding: 0.5em 1em 3em; }
h1 { font-size: 1.6em; line-height: 1.25; margin: 0.6em 0 0.4em; }
h2 { font-size: 1.25em; line-height: 1.3; margin: 2.2em 0 0.6em; padding-top: 0.6em; border-top: 1px solid #ccc; }
p, li, figcaption { overflow-wrap: anywhere; }
a { color: #0b4f8a; }
nav ol { padding-left: 1.6em; }
.answers { background: #eaf1f8; border: 1px solid #0072b2; border-radius: 4px; padding: 0.1em 1em; margin: 1em 0; }
figure { margin: 1.2em 0; }
img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 0.9em; color: #333; margin-top: 0.4em; }
pre { overflow-x: auto; max-width: 100%; background: #f4f4f4; padding: 0.6em; font-size: 0.8em; line-height: 1.35; }
.top { font-size: 0.85em; }
""".strip()


class Site(NamedTuple):
    """What write_site wrote: index.html and the figure files beside it."""

    index: str
    files: list  # every path written, index.html last
    bytes: int  # their size on disk together


def slug(title: str, taken: set) -> str:
    """An anchor id from a title, unique among `taken` (which it joins)."""
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "section"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    taken.add(name)
    return name


def figure_names(pages: list) -> dict:
    """{source path: name under figures/}, each source once, names made unique where two differ."""
    names, used = {}, set()
    for page in pages:
        for f in page.figures:
            src = os.path.abspath(f.path)
            if src in names:
                continue
            stem, ext = os.path.splitext(os.path.basename(src))
            name, k = stem + ext, 2
            while name in used:
                name, k = f"{stem}-{k}{ext}", k + 1
            used.add(name)
            names[src] = name
    return names


def escaped(text: str, link=None) -> str:
    """text as HTML; each page_ref in it becomes link(key) (a link to that section), or the key itself (keys
    arrive escaped)."""
    return fill_references(html.escape(text), link or (lambda k: k))


def paragraph(kind: str, text: str, link=None) -> str:
    """One text block as HTML: an answer with its bold lead, a paragraph, or a preformatted table."""
    if kind == "table":
        return f"<pre>{escaped(text, link)}</pre>"
    lead, rest = answer_lead(text) if kind == "answer" else ("", text)
    lead = f"<strong>{escaped(lead, link)}</strong> " if lead else ""
    return f"<p>{lead}{escaped(rest, link)}</p>"


def figure_html(f, name: str, size: tuple, link=None) -> str:
    """<figure> with the image at its own size (scaled down to the column), its alt text and caption."""
    w, h = size
    caption = f"<figcaption>{escaped(f.caption, link)}</figcaption>" if f.caption else ""
    return (f'<figure><img src="{FIGURES}/{html.escape(name, quote=True)}" width="{w}" height="{h}" '
            f'alt="{html.escape(f.alt, quote=True)}">{caption}</figure>')


def section_html(page: Page, anchor: str, names: dict, sizes: dict, link=None) -> str:
    """One page as a <section>: title, answers, figures, then the text and tables; link(key) writes a page_ref."""
    answers = [paragraph(k, t, link) for k, t in page.blocks if k == "answer"]
    body = [paragraph(k, t, link) for k, t in page.blocks if k != "answer"]
    figures = [figure_html(f, names[os.path.abspath(f.path)], sizes[os.path.abspath(f.path)], link)
               for f in page.figures]
    parts = [f'<section id="{anchor}">', f"<h2>{html.escape(page.title)}</h2>"]
    parts += ['<div class="answers">', *answers, "</div>"] if answers else []
    parts += figures + body + ['<p class="top"><a href="#contents">Back to the contents</a></p>', "</section>"]
    return "\n".join(parts)


def index_html(pages: list, title: str, intro: str, names: dict, sizes: dict) -> str:
    taken = {"contents"}
    anchors = [slug(p.title, taken) for p in pages]
    toc = "\n".join(f'<li><a href="#{a}">{html.escape(p.title)}</a></li>' for p, a in zip(pages, anchors))
    by_key = {}
    for p, a in zip(pages, anchors):  # a page_ref names a section by its title or the title's part before ":"
        by_key.setdefault(section_key(p.title), a)
        by_key.setdefault(p.title.strip(), a)
    link = lambda k: f'<a href="#{by_key[html.unescape(k)]}">{k}</a>' if html.unescape(k) in by_key else k
    sections = "\n".join(section_html(p, a, names, sizes, link) for p, a in zip(pages, anchors))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="{MARK}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
{STYLE}
</style>
</head>
<body>
<main>
<h1>{html.escape(title)}</h1>
{f"<p>{html.escape(intro)}</p>" if intro else ""}
<nav id="contents" aria-label="Contents">
<h2>Contents</h2>
<ol>
{toc}
</ol>
</nav>
{sections}
</main>
</body>
</html>
"""


def write_site(pages: list, folder: str, title: str, intro: str = "") -> Site:
    """The pages as folder/index.html with their figures copied into folder/figures/, written as one set. An
    existing index.html is replaced only if this package wrote it, a figure only if it did or if it lies in
    such a site; otherwise OutputError before anything is written. Returns what was written."""
    names = figure_names(pages)
    sizes = {}
    for src in names:
        with Image.open(src) as im:  # width and height in the HTML: the page does not jump as images load
            sizes[src] = im.size
    targets = {src: os.path.join(folder, FIGURES, name) for src, name in names.items()}
    index = os.path.join(folder, "index.html")
    text = index_html(pages, title, intro, names, sizes)
    paths = list(targets.values()) + [index]
    mine = os.path.exists(index) and ours(index)  # a site this package wrote: its figures/ are its own
    foreign = [p for p in paths if os.path.exists(p) and not (ours(p) or mine and p != index)]
    if foreign:
        raise OutputError(f"{foreign[0]} exists and was not written by this package, so it is not replaced; move it "
                          "away or choose another folder")
    with replacing_all(paths) as tmps:
        for src, tmp in zip(targets, tmps):
            shutil.copyfile(src, tmp)
        with open(tmps[-1], "w", encoding="utf-8") as f:
            f.write(text)
    return Site(index, paths, sum(os.path.getsize(p) for p in paths))
