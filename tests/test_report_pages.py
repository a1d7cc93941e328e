"""report/pages.py: a page's text names another section's page by its key, and the typesetter prints the
number that section really lands on after layout, even when a section before it grows or moves."""
import numpy as np
import pytest

import matplotlib.pyplot as plt

from report.pages import (Figure, Page, fill_references, layout_sheets, page_ref, render_pages,
                          resolve_references, write_report)


def printed(figs) -> str:
    """Every text drawn on every sheet, joined (a wrapped sentence is split over lines)."""
    return " ".join(t.get_text() for f in figs for t in f.texts)


def report(long_second: bool, tall_png=None) -> list:
    """Three sections; the first names the third's page. With long_second the second fills two sheets, so the
    third moves from sheet 3 to sheet 4."""
    second = "\n\n".join(["filler text " * 60] * (20 if long_second else 1))
    third_images = [Figure(str(tall_png), "a tall bar")] * 2 if tall_png else []
    return [Page.of_text("Problem 1: overview", [], f"Problem 3 is on {page_ref('Problem 3')}, problem 2 on "
                         f"{page_ref('Problem 2')}."),
            Page.of_text("Problem 2: long", [], second),
            Page("Problem 3: last", third_images, [("text", "the end")])]


def test_a_reference_follows_its_section_when_the_section_moves():
    short, long = report(False), report(True)
    figs = render_pages(short)
    assert len(figs) == 3 and "Problem 3 is on page 3, problem 2 on page 2." in printed(figs[:1])
    for f in figs:
        plt.close(f)
    figs = render_pages(long)
    assert len(figs) == 4 and "Problem 3 is on page 4, problem 2 on pages 2-3." in printed(figs[:1])
    for f in figs:
        plt.close(f)


def test_a_section_over_two_sheets_is_named_by_both_and_shared_sheets_by_one(tmp_path):
    tall = tmp_path / "tall.png"
    plt.imsave(tall, np.zeros((900, 1000)))  # 0.9 FIG_W tall: two of them need two sheets
    pages, sheets = resolve_references(report(False, tall))
    assert sheets.spans == [(0, 0), (1, 1), (2, 3)]
    assert "Problem 3 is on pages 3-4" in pages[0].text
    pages, sheets = resolve_references(report(False), flow=True)  # three short sections share one sheet
    assert len(sheets.ops) == 1 and "Problem 3 is on page 1, problem 2 on page 1." in pages[0].text


def test_references_in_captions_and_to_missing_sections_and_the_website_form(tmp_path):
    png = tmp_path / "wide.png"
    plt.imsave(png, np.zeros((100, 1000)))
    pages = [Page("Problem 1: a", [Figure(str(png), "bar", f"As on {page_ref('Problem 2')}.")], []),
             Page("Problem 2: b", [], [("text", f"Problem 9 is on {page_ref('Problem 9')}.")])]
    filled, _ = resolve_references(pages)
    assert filled[0].figures[0].caption == "As on page 2."
    assert filled[1].text == "Problem 9 is on no page (not in this report)."
    assert pages[1].text == "Problem 9 is on {page of Problem 9}."  # the pages themselves are not changed
    link = fill_references(pages[1].text, lambda key: f"<a href='#{key}'>{key}</a>")
    assert link == "Problem 9 is on <a href='#Problem 9'>Problem 9</a>."
    with pytest.raises(ValueError):
        page_ref("a {brace}")


def test_the_pdf_holds_the_filled_numbers(tmp_path):
    pdf = tmp_path / "r.pdf"
    assert write_report(report(True), str(pdf)) == 4
    assert len(layout_sheets(report(True)).ops) == 4


def test_a_paragraph_that_fits_a_sheet_is_never_split_and_a_longer_one_is():
    """The TA's complaint: a figure's explaining paragraph began at a sheet's foot and ended on the next."""
    words = lambda n, w="w": " ".join(f"{w}{i}" for i in range(n))
    first = "\n\n".join([words(60)] * 16)  # fills most of a sheet
    ops = layout_sheets([Page.of_text("Problem 1: text", [], first + "\n\n" + words(400, "z"))]).ops
    lines = lambda sheet: [op[2] for op in sheet if op[0] == "text"]
    assert len(ops) == 2 and lines(ops[1])[0].startswith("z0 z1")  # the long paragraph starts the second sheet
    assert not any("z" in line for line in lines(ops[0]))  # ... and none of it is on the first
    # a paragraph taller than a sheet still flows from the first sheet on
    ops = layout_sheets([Page.of_text("Problem 1: text", [], words(60) + "\n\n" + words(12000))]).ops
    assert len(ops) >= 2 and len(lines(ops[0])) > 20


def test_the_last_figure_keeps_its_explaining_paragraph_and_text_never_runs_ahead_of_a_figure(tmp_path):
    """The TA: figures on one sheet, the paragraph that explains them on the next (A.5-A.6, B.2.4)."""
    words = lambda n: " ".join(f"z{i}" for i in range(n))
    tall, mid = tmp_path / "tall.png", tmp_path / "mid.png"
    plt.imsave(tall, np.zeros((500, 1000)))  # 0.5 FIG_W: about 3.7 in
    plt.imsave(mid, np.zeros((300, 1000)))  # about 2.2 in
    page = Page.of_text("Problem 1: figures", [Figure(str(tall), "a"), Figure(str(tall), "b"), Figure(str(mid), "c")],
                        words(500))  # a paragraph of about 25 lines: it and the third figure do not fit below two
    ops = layout_sheets([page]).ops
    kinds = [[op[0] for op in sheet] for sheet in ops]
    assert kinds[0].count("image") == 2 and "text" not in kinds[0]  # the third figure moved, and the text waits
    assert kinds[1][:3] == ["title", "image", "text"]  # ... with it, its paragraph right below
    # a single figure stays under its answers (no sheet of answers alone); its paragraph starts the next sheet whole
    alone = Page("Problem 1: one", [Figure(str(tall), "a")], [("answer", words(700)), ("text", words(500))])
    first, second = [[op[0] for op in sheet] for sheet in layout_sheets([alone]).ops][:2]
    assert "image" in first and "text" not in first and second[1] == "text"
