"""report/site.py: the website made from the report's pages, checked in a real browser.

Headless Chromium (Debian's `chromium` package) through Playwright for Python, pointed at the system
browser (Playwright's own browser downloads are never used). At 1280 and 390 px wide the checker fails
when an image does not load (naturalWidth 0) or has no alt text, a link points nowhere (a missing anchor
or file), the page asks the network for anything, the text is not dark on light, the phone lays the page
out wider than its screen (no viewport meta), or the page scrolls sideways at 390 px. A planted broken
image, overflowing line and dead link make it fail (the tests below check that it notices each).
The site is built from synthetic pages with tiny images, one real figure and one real page (the CS180
opening page), so the whole file runs in seconds.

    SITE_SCREENSHOTS=/tmp/shots python -m pytest tests/test_site.py   # also keep full-page screenshots
"""
import html
import os
import shutil
import signal
import urllib.parse
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

import visualize
from cs180 import parta_pages
from cs180.figures import image_grid
from report.animation import write_gif
from report.pages import Figure, Page, answer_lead, render_pages
from report.site import write_site
from runio.errors import OutputError

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the browser tests skip; the writer's own tests still run
    sync_playwright = None

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INSTALL = "apt-get install -y chromium && pip install -r requirements-test.txt"
needs_browser = pytest.mark.skipif(sync_playwright is None or CHROMIUM is None,
                                   reason=f"needs Chromium and Playwright for Python: {INSTALL}")
WIDTHS = (1280, 390)  # a laptop, and a phone (an iPhone 12-15 is 390 CSS px wide)

# What the page itself can tell: images, alt texts, anchors, sideways scrolling, the viewport, contrast.
CHECKS_JS = r"""
(width) => {
  const out = [];
  for (const img of document.images) {
    const src = img.getAttribute('src');
    if (!img.complete || img.naturalWidth === 0) out.push(`broken image: ${src}`);
    if (!(img.getAttribute('alt') || '').trim()) out.push(`image without alt text: ${src}`);
  }
  const links = [];
  for (const a of document.querySelectorAll('a')) {
    const href = a.getAttribute('href');
    if (!href) { out.push(`link without a target: ${a.textContent}`); continue; }
    if (href.startsWith('#')) {
      if (!document.getElementById(decodeURIComponent(href.slice(1)))) out.push(`link to a missing anchor: ${href}`);
    } else links.push(a.href);
  }
  const s = document.scrollingElement;
  if (s.scrollWidth > s.clientWidth) out.push(`scrolls sideways: ${s.scrollWidth} px wide in a ${s.clientWidth} px window`);
  if (document.documentElement.clientWidth > width)
    out.push(`laid out ${document.documentElement.clientWidth} px wide on a ${width} px screen (no viewport meta?)`);
  const lum = (c) => {
    const [r, g, b] = c.match(/[\d.]+/g).slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const st = getComputedStyle(document.body);
  const fg = lum(st.color), bg = lum(st.backgroundColor === 'rgba(0, 0, 0, 0)' ? 'rgb(255, 255, 255)' : st.backgroundColor);
  if (!(bg > fg && (bg + 0.05) / (fg + 0.05) >= 7)) out.push(`text is not dark on light: ${st.color} on ${st.backgroundColor}`);
  return {problems: out, links: links};
}
"""


def site_problems(browser, index: str, width: int, screenshot: str = None) -> list:
    """Everything wrong with the site at `index` in `browser` at `width` CSS px (a phone below 600 px:
    mobile layout, touch); [] when nothing is."""
    context = browser.new_context(viewport={"width": width, "height": 900}, is_mobile=width < 600,
                                  has_touch=width < 600)
    page = context.new_page()
    asked = []

    def route(r):  # a page on disk must load nothing from the network
        if r.request.url.startswith("file:"):
            r.continue_()
        else:
            asked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(urllib.parse.urljoin("file:", urllib.request.pathname2url(os.path.abspath(index))), wait_until="load")
    found = page.evaluate(CHECKS_JS, width)
    problems = found["problems"] + [f"asks the network for {u}" for u in asked]
    for url in found["links"]:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "file":
            problems.append(f"link outside the site: {url}")
        elif not os.path.exists(urllib.request.url2pathname(parts.path)):
            problems.append(f"link to a missing file: {url}")
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)
    context.close()
    return problems


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None or CHROMIUM is None:
        pytest.skip(f"needs Chromium and Playwright for Python: {INSTALL}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


def tiny_png(path, w, h, colour):
    Image.fromarray(np.full((h, w, 3), colour, np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """Synthetic pages (tiny PNGs and a GIF, long words, a wide table, a page without figures), one real
    figure (a CS180 image grid at the report's 200 dpi) and one real page (the CS180 opening page)."""
    d = tmp_path_factory.mktemp("figs")
    wide = tiny_png(d / "wide.png", 1600, 200, (30, 90, 160))  # wider than any screen: must scale down
    small = tiny_png(d / "small.png", 40, 30, (200, 60, 20))
    frames = [np.full((20, 30, 3), v, np.uint8) for v in (0, 120, 240)]
    gif = write_gif(str(d / "anim.gif"), frames)
    torch.manual_seed(0)
    grid = image_grid([[torch.rand(28, 28) * 2 - 1 for _ in range(5)]], str(d), "grid", ["row"], list("abcde"))
    long_word = "x" * 300
    table = "\n".join(["column " * 40] + [f"{i:4d} " + "9.999 " * 40 for i in range(5)])
    synthetic = [
        Page.of_text("Problem 9: a test page", [Figure(wide, "a wide blue bar", "Figure 1. A wide bar."), small, gif],
                     f"Evidence paragraph with a very long word {long_word}.\n\nSecond paragraph.",
                     answers="Question one: the answer.\n\nQuestion two: another answer."),
        Page("Problem 9: a table", [grid], [("text", "Before the table."), ("table", table)]),
        Page("Problem 9: text only", [], [("answer", "Only an answer: and no figure.")]),
    ]
    return synthetic + [parta_pages.opening_page()]


@pytest.fixture
def site(tmp_path, pages):
    return write_site(pages, str(tmp_path / "site"), "A test report", "Made from the report's pages.")


def plant(index: str, fault: str) -> None:
    """Put the HTML `fault` at the top of the site's first section (a test's deliberate fault)."""
    with open(index, encoding="utf-8") as f:
        text = f.read()
    with open(index, "w", encoding="utf-8") as f:
        f.write(text.replace("<section ", fault + "\n<section ", 1))


# ------------------------------------------------------------------ the writer
def test_one_source_sections_in_order_answers_first_every_image_copied_with_alt(site, pages):
    with open(site.index, encoding="utf-8") as f:
        text = f.read()
    starts = [text.index(f'<h2>{p.title}</h2>') for p in pages]
    assert starts == sorted(starts)  # one section per page, in the pages' order
    assert text.count('<li><a href="#') == len(pages)  # the table of contents
    first = text[starts[0]:starts[1]]
    assert first.index('class="answers"') < first.index("<figure>") < first.index("Evidence paragraph")
    assert "<strong>Question one:</strong> the answer." in first  # the lead in bold, as in the PDF
    assert '<figcaption>Figure 1. A wide bar.</figcaption>' in first and 'alt="a wide blue bar"' in first
    assert 'alt="Figure &#x27;small&#x27; of the section &#x27;Problem 9: a test page&#x27;"' in first  # the default
    assert 'alt=""' not in text and "<script" not in text and "http" not in text.replace(
        'name="viewport"', "")  # no script, nothing from the network
    names = sorted(os.listdir(os.path.join(os.path.dirname(site.index), "figures")))
    assert names == ["anim.gif", "grid.png", "small.png", "wide.png"]
    for page in pages:  # every text block of every page, word for word (the PDF's text)
        for kind, block in page.blocks:
            assert html.escape(answer_lead(block)[1] if kind == "answer" else block) in text, block[:40]
    assert site.bytes == sum(os.path.getsize(p) for p in site.files)


def test_rewrites_its_own_site_and_never_a_file_of_the_users(tmp_path, pages):
    folder = tmp_path / "site"
    write_site(pages[:1], str(folder), "first")
    write_site(pages[:1], str(folder), "second")  # a rerun replaces what it wrote
    assert "<title>second</title>" in (folder / "index.html").read_text()
    (folder / "index.html").write_text("<html>the user's own page</html>")
    with pytest.raises(OutputError, match="not written by this package"):
        write_site(pages[:1], str(folder), "third")
    assert (folder / "index.html").read_text() == "<html>the user's own page</html>"


def test_visualize_writes_the_site_of_the_pages_it_makes_and_checks_the_folder_first(tmp_path, monkeypatch, pages,
                                                                                      capsys):
    monkeypatch.setattr(visualize, "cs180_pages", lambda cfg, part: [pages[0]] if part == "cs180-a" else [])
    monkeypatch.setattr(visualize.parta_pages, "opening_page", lambda: pages[2])
    argv = ["--problem", "cs180", "--out", str(tmp_path / "figs"), "--quiet", "--jobs", "1", "--site"]  # patched here
    assert visualize.main(argv + [str(tmp_path / "site")]) == 0
    assert "site: " in capsys.readouterr().out
    text = (tmp_path / "site" / "index.html").read_text()
    assert "<title>CS180 project 5 on MNIST</title>" in text
    assert text.index(f"<h2>{pages[2].title}</h2>") < text.index(f"<h2>{pages[0].title}</h2>")  # the opening first
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "index.html").write_text("<html>the user's own page</html>")
    monkeypatch.setattr(visualize, "cs180_pages", lambda cfg, part: pytest.fail("made the pages before refusing"))
    assert visualize.main(argv + [str(tmp_path / "theirs")]) == 2
    assert "--site" in capsys.readouterr().err


def test_the_pdf_prints_captions_and_names_the_animations(pages):
    """The PDF says what the site says: the caption under its figure, the animation named with its caption."""
    figs = render_pages(pages[:1])
    texts = [t.get_text() for f in figs for t in f.texts]
    assert "Figure 1. A wide bar." in texts
    assert any(t.startswith("Animation anim.gif (on the website") or "anim.gif" in t for t in texts)
    assert sum(len(f.axes) for f in figs) == 2  # the two stills; the GIF is not drawn on paper


def test_a_captioned_figure_taller_than_a_sheet_is_scaled_to_leave_room_for_its_caption(tmp_path):
    tall = tiny_png(tmp_path / "tall.png", 100, 2000, (0, 0, 0))
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the typesetter kept moving the figure to a new sheet"))
    signal.alarm(30)
    try:
        figs = render_pages([Page("Tall", [Figure(tall, "a black bar", "A caption. " * 30)], [])])
    finally:
        signal.alarm(0)
    assert len(figs) == 1 and len(figs[0].axes) == 1
    bottom = figs[0].axes[0].get_position().y0
    captions = [t.get_position()[1] for t in figs[0].texts if t.get_text().startswith("A caption.")]
    assert captions and max(captions) <= bottom + 1e-9 and min(captions) > 0  # under the image, on the sheet


# ------------------------------------------------------------------ in a real browser
@needs_browser
def test_site_loads_whole_and_fits_a_phone_in_a_real_browser(browser, site):
    shots = os.environ.get("SITE_SCREENSHOTS")
    for width in WIDTHS:
        shot = os.path.join(shots, f"site_{width}.png") if shots else None
        assert site_problems(browser, site.index, width, shot) == [], width


@needs_browser
def test_checker_reports_a_broken_image(browser, site):
    os.remove(os.path.join(os.path.dirname(site.index), "figures", "small.png"))
    for width in WIDTHS:
        assert site_problems(browser, site.index, width) == ["broken image: figures/small.png"], width


@needs_browser
def test_checker_reports_an_overflowing_line(browser, site):
    plant(site.index, '<p style="white-space: nowrap">' + "an overflowing line " * 40 + "</p>")
    problems = site_problems(browser, site.index, 390)
    assert len(problems) == 1 and problems[0].startswith("scrolls sideways:"), problems


@needs_browser
def test_checker_reports_dead_links_and_missing_alt_text(browser, site):
    plant(site.index, '<p><a href="#nowhere">a</a> <a href="gone.html">b</a> <a href="#contents">c</a></p>'
                      '<img src="figures/small.png" alt=" ">')
    problems = site_problems(browser, site.index, 1280)
    assert problems[:3] == ["image without alt text: figures/small.png", "link to a missing anchor: #nowhere"] + \
        [p for p in problems if p.startswith("link to a missing file:") and p.endswith("/gone.html")], problems
    assert len(problems) == 3


@needs_browser
def test_checker_reports_a_page_that_is_not_made_for_a_phone(browser, site):
    with open(site.index, encoding="utf-8") as f:
        text = f.read()
    with open(site.index, "w", encoding="utf-8") as f:
        f.write(text.replace('<meta name="viewport" content="width=device-width, initial-scale=1">', ""))
    problems = site_problems(browser, site.index, 390)
    assert problems and problems[0].startswith("laid out 980 px wide on a 390 px screen"), problems


def test_a_page_reference_is_a_link_to_its_section_on_the_site(tmp_path):
    """The PDF prints a page_ref as a page number; the site makes it a link to the section it names (by the
    title's part before the colon), escaped like the text around it, and leaves an unknown key as plain text."""
    from report.pages import page_ref
    from report.site import index_html
    pages = [Page("Problem 1: setup", [], [("answer", f"README: see {page_ref('Problem 5')} & {page_ref('Nowhere')}")]),
             Page("Problem 5: MNIST", [], [("text", "digits")])]
    out = index_html(pages, "t", "intro", {}, {})
    line = next(l for l in out.splitlines() if "README" in l)
    assert '<a href="#problem-5-mnist">Problem 5</a> &amp; Nowhere' in line, line
    assert "{page of" not in out
