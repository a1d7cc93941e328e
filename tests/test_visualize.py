"""visualize.py: the density estimator against known densities, every problem's command on tiny
settings, reproducibility, and clean rejection of bad input."""
import csv
import os
import re
import shutil

import numpy as np
import pytest
import torch

import matplotlib.pyplot as plt
from matplotlib.text import Text

import cs180.denoiser as dn
import report.pages as pages
import visualize
from gmm import GMM, estimate_density, hdr_levels, l1_distance, make_grid, sample_q_t, true_density
from report.figures import save_figure
from report.pages import FIG_W, Page
from two_pixel import problem1, problem2, problem3, problem4
from two_pixel.figures import VARIANTS
from two_pixel.trainer import checkpoint_config

# tiny settings: 30-step models, 300 chains, a coarse grid
TINY = ["--n", "300", "--grid", "60", "--train-steps", "30", "--Ts", "5,50", "--quiet"]


def run(*args):
    return visualize.main([*args, *TINY])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Runs problem 3 on an empty runs folder, which trains the T = 5 and T = 50 models
    (two at a time, so the parallel path is exercised); returns (runs, figures) folders."""
    runs = tmp_path_factory.mktemp("runs")
    out = tmp_path_factory.mktemp("figures")
    assert run("--problem", "3", "--runs", str(runs), "--out", str(out), "--jobs", "2") == 0
    return runs, out


# ------------------------------------------------------------ density estimate
@pytest.fixture(scope="module")
def grid():
    return make_grid(150)


def test_kde_of_mixture_samples_matches_the_mixture(grid):
    x, _ = GMM().sample(5000, torch.Generator().manual_seed(1))
    est = estimate_density(x.numpy(), grid, "kde")
    l1 = l1_distance(est.density, true_density(grid), grid)
    assert l1 < 0.2, l1  # measured about 0.11
    assert 0.01 < est.bandwidth < 0.08  # a fraction of the peaks' std of 0.1, not the cloud's spread
    assert abs(est.density.sum() * grid.cell_area - 1) < 0.01


def test_a_wrong_estimate_fails_the_same_check(grid):
    """The threshold above is tight enough to catch wrong weights or wrong widths."""
    q = true_density(grid)
    for wrong in (GMM(weights=(0.65, 0.35)), GMM(std=0.15)):
        x, _ = wrong.sample(5000, torch.Generator().manual_seed(1))
        est = estimate_density(x.numpy(), grid, "kde")
        assert l1_distance(est.density, q, grid) > 0.4


@pytest.mark.parametrize("alpha_bar", [0.05, 0.6])
def test_kde_follows_the_noised_marginal(grid, alpha_bar):
    x = sample_q_t(GMM(), 5000, alpha_bar, torch.Generator().manual_seed(2))
    est = estimate_density(x.numpy(), grid, "kde")
    assert l1_distance(est.density, true_density(grid, alpha_bar), grid) < 0.15


def test_histogram_of_mixture_samples_matches_the_mixture(grid):
    x, _ = GMM().sample(20_000, torch.Generator().manual_seed(3))
    est = estimate_density(x.numpy(), grid, "hist")
    assert l1_distance(est.density, true_density(grid), grid) < 0.25  # about 0.15


def test_hdr_levels_enclose_the_requested_mass(grid):
    q = true_density(grid, 0.5)
    for mass, level in zip(sorted((0.99, 0.9, 0.5)), reversed(hdr_levels(q, grid))):
        inside = q[q >= level].sum() * grid.cell_area / (q.sum() * grid.cell_area)
        assert abs(inside - mass) < 0.01


def test_bad_points_are_rejected(grid):
    with pytest.raises(ValueError):
        estimate_density(np.zeros((5, 3)), grid)
    with pytest.raises(ValueError):
        estimate_density(np.zeros((5, 2)), grid, "fft")


# ------------------------------------------------------------ the commands
def files_of(out):
    return sorted(f for f in os.listdir(out) if not f.startswith("."))


def test_problem3_trains_missing_models_and_writes_its_files(trained):
    runs, out = trained
    assert os.path.exists(runs / "T5" / "model.pt") and os.path.exists(runs / "T50" / "model.pt")
    assert files_of(out) == ["problem3.csv", "problem3.npz", "problem3.pdf", "problem3.png"]
    with open(out / "problem3.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["T"], r["predictor"]) for r in rows] == [("5", "network"), ("5", "exact"), ("50", "network"), ("50", "exact")]
    data = np.load(out / "problem3.npz")
    assert data["samples"].shape == (2, 300, 2) and data["estimate"].shape == (2, 60, 60)
    import matplotlib.image
    assert matplotlib.image.imread(out / "problem3.png").shape[1] >= 150 * 7  # >= 150 dpi at 7+ inches


@pytest.fixture
def drawn(monkeypatch):
    """Every figure the pages of problems 1-4 save, by name, inspectable after it is written."""
    figs = {}

    def keep(fig, out_dir, name, *numbers, **arrays):
        figs[name] = fig
        return save_figure(fig, out_dir, name, *numbers, **arrays)

    for page in (problem1, problem2, problem3, problem4):
        monkeypatch.setattr(page, "save_figure", keep)
    return figs


def test_problems_2_and_4_write_their_files(trained, tmp_path, drawn):
    runs, _ = trained
    for p in ("2", "4"):
        assert run("--problem", p, "--runs", str(runs), "--out", str(tmp_path)) == 0
    assert files_of(tmp_path) == sorted([f"problem{p}.{e}" for p in (2, 4) for e in ("csv", "gif", "npz", "pdf", "png")]
                                        + ["problem4_sweep.pdf", "problem4_sweep.png"])
    d2 = np.load(tmp_path / "problem2.npz")
    assert d2["estimate"].shape == (5, 60, 60) and d2["trajectory"].shape == (51, 2)
    with open(tmp_path / "problem4.csv") as f:
        assert len(list(csv.DictReader(f))) == 5 * 2 * 2  # w x y x (network, exact)
    d4 = np.load(tmp_path / "problem4.npz")
    for y in (0, 1):  # both chains start from the same x_T
        assert d4[f"trajectory_y{y}"].shape == (51, 2)
        np.testing.assert_array_equal(d4[f"trajectory_y{y}"][0], d4["x_T"])
    assert set(drawn) == {"problem2", "problem4", "problem4_sweep"}


def test_problem4_main_figure_shows_both_labels_from_one_start(trained, tmp_path, drawn):
    """The handout's figure: the y = 0 and y = 1 chains from the same x_T, told apart by colour and line style,
    inside the axes, over visible true-density contours; the guidance sweep is a separate figure."""
    runs, _ = trained
    assert run("--problem", "4", "--runs", str(runs), "--out", str(tmp_path)) == 0
    ax = drawn["problem4"].axes[0]
    chains = {line.get_label(): line for line in ax.get_lines() if line.get_label() in ("y = 0", "y = 1")}
    assert set(chains) == {"y = 0", "y = 1"}
    a, b = chains["y = 0"], chains["y = 1"]
    assert (a.get_xdata()[0], a.get_ydata()[0]) == (b.get_xdata()[0], b.get_ydata()[0])  # one x_T
    assert a.get_color() != b.get_color() and a.get_linestyle() != b.get_linestyle()
    for line in (a, b):  # every point of both chains lies inside the axes
        x0, x1 = ax.get_xlim()
        y0, y1 = ax.get_ylim()
        assert x0 <= line.get_xdata().min() and line.get_xdata().max() <= x1
        assert y0 <= line.get_ydata().min() and line.get_ydata().max() <= y1
    assert len(ax.collections) >= 3  # the true density's contours and both classes'
    assert len(drawn["problem4_sweep"].axes) == 5  # one panel per w, a figure of its own


def smallest_printed_font(fig) -> float:
    """The smallest visible text of `fig` in points once the report draws it FIG_W wide."""
    fig.canvas.draw()
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes) * FIG_W / fig.get_figwidth()


def pages_of(pdf):
    return len(re.findall(rb"/Type\s*/Page\b", pdf.read_bytes()))


def test_all_with_report(trained, tmp_path, capsys, monkeypatch, drawn):
    """Every figure and a page per problem, each opening with its answers; figures print with fonts of 7 pt or
    more; problem 1 trains and measures a model per departure from the handout. When the MNIST page fails,
    its page says why and the rest is kept."""
    def broken(fig_dir, retrain=False):
        raise RuntimeError("no MNIST here\nsecond line")

    made = []
    monkeypatch.setattr(visualize.mnist_problem5, "problem5_page", broken)
    monkeypatch.setattr(visualize, "write_report", lambda p, path, flow=False: (made.extend(p), pages.write_report(p, path, flow))[1])
    runs, _ = trained
    pdf = tmp_path / "report.pdf"
    assert run("--problem", "all", "--runs", str(runs), "--out", str(tmp_path / "fig"), "--report", str(pdf),
               "--jobs", "1") == 0  # in this process: the patches above do not reach a spawned worker
    assert "report:" in capsys.readouterr().out
    assert pages_of(pdf) >= 5  # problems 1-5, one page or more each
    assert {"problem1_loss.png", "problem2.png", "problem3.png", "problem4.png"} <= set(files_of(tmp_path / "fig"))
    assert [p.title.split(":")[0] for p in made] == [f"Problem {i}" for i in range(1, 6)]
    for page in made[:4]:  # problems 1-4: the answers come first, then the evidence
        kinds = [k for k, _ in page.blocks]
        assert kinds[0] == "answer" and "text" in kinds, page.title
        assert kinds == sorted(kinds, key=lambda k: k != "answer"), page.title
    for name, fig in drawn.items():
        assert fig.get_figwidth() == pytest.approx(FIG_W), name
        assert smallest_printed_font(fig) >= 7, name
    with open(tmp_path / "fig" / "problem1_departures.csv") as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    assert {"default (this report)", "handout UNet", "label dropout 0.1", "no EMA (last weights)",
            "x0_hat not clipped", "exact noise predictor"} <= set(rows)
    for variant, flags in VARIANTS.items():  # each variant changes exactly its own setting
        c = checkpoint_config(runs / f"T50-{variant}" / "model.pt")
        assert all(getattr(c, k) == v for k, v in flags.items()) and c.T == 50
    text = visualize.problem5(visualize.Settings(problems=())).text
    assert "could not be built" in text and "no MNIST here" in text and "second line" not in text


def test_sections_made_in_two_processes_are_those_made_in_one(trained, tmp_path, capsys):
    """visualize.py makes the sections of a report in a pool of spawned processes (problem 5 beside the two-pixel
    trainings): the pages, their order and the numbers under them are the same as when made one after another."""
    runs, _ = trained
    made = {}
    for jobs in (1, 2):
        cfg = visualize.parse_settings(["--problem", "all", "--runs", str(runs), "--out", str(tmp_path / f"j{jobs}"),
                                        "--jobs", str(jobs), *TINY])
        models, missing = visualize.check_checkpoints(cfg)
        assert not missing
        os.makedirs(cfg.out)
        pages_made = visualize.make_sections(cfg, ["problem 3", "problem 2", "problem 4"], models, missing)
        made[jobs] = ([(p.title, p.blocks) for p in pages_made],
                      {f: (tmp_path / f"j{jobs}" / f).read_text() for f in ("problem2.csv", "problem3.csv", "problem4.csv")})
    assert [t.split(":")[0] for t, _ in made[2][0]] == ["Problem 3", "Problem 2", "Problem 4"]  # asked order
    assert made[2] == made[1]
    assert "problem 3: 1 section in" in capsys.readouterr().out


def test_a_variant_trained_otherwise_is_refused(trained, tmp_path, capsys):
    runs, _ = trained
    shutil.copytree(runs / "T50", tmp_path / "runs" / "T50")
    shutil.copytree(runs / "T50", tmp_path / "runs" / "T50-handout-unet")  # not the handout's UNet
    rc = run("--problem", "all", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "fig"),
             "--report", str(tmp_path / "r.pdf"))
    assert_clean_failure(rc, capsys, "handout-unet", "arch=nonorm")
    assert not (tmp_path / "fig").exists()


def test_typesetter_puts_answers_first_and_never_shrinks_a_figure_for_text(tmp_path):
    png = tmp_path / "wide.png"
    plt.imsave(png, np.zeros((300, 1000)))  # drawn FIG_W wide: 0.3 FIG_W tall
    page = Page.of_text("Problem 9: test", [str(png)] * 3, "\n\n".join(["evidence " * 60] * 30),
                        answers="Question one: the answer.\n\nQuestion two: another answer.")
    assert [k for k, _ in page.blocks][:3] == ["answer", "answer", "text"]
    figs = pages.render_page(page)
    assert len(figs) >= 2 and figs[1].texts[0].get_text() == "Problem 9: test (continued)"
    first = figs[0]
    images = sorted(first.axes, key=lambda a: -a.get_position().y1)
    assert len(images) == 3
    for ax in images:  # full width and full height: the figure prints at its own font sizes
        box = ax.get_position()
        assert box.width * pages.PAGE_W == pytest.approx(FIG_W)
        assert box.height * pages.PAGE_H == pytest.approx(0.3 * FIG_W, rel=1e-3)
    answer_y = [t.get_position()[1] for t in first.texts if "answer" in t.get_text()]
    evidence_y = [t.get_position()[1] for t in first.texts if "evidence" in t.get_text()]
    assert answer_y and min(answer_y) > images[0].get_position().y1  # the answers sit above the figures
    assert not evidence_y or max(evidence_y) < images[-1].get_position().y0  # the evidence below them
    for fig in figs:
        assert min(t.get_fontsize() for t in fig.texts) >= 7
        plt.close(fig)


def test_problem5_page_comes_from_mnist_problem5(trained, tmp_path, monkeypatch):
    """The report shows the Page that mnist.problem5.problem5_page(fig_dir) returns."""
    runs, figs = trained
    calls = []

    def problem5_page(fig_dir, retrain=False):
        calls.append(fig_dir)
        return Page.of_text("Problem 5: MNIST", [str(figs / "problem3.png")], "first paragraph\n\nsecond paragraph")

    monkeypatch.setattr(visualize.mnist_problem5, "problem5_page", problem5_page)
    page = visualize.problem5(visualize.Settings(problems=(), out=str(tmp_path)))
    assert calls == [str(tmp_path)] and page.images == [str(figs / "problem3.png")]
    assert [t for _, t in page.blocks] == ["first paragraph", "second paragraph"]
    visualize.write_report([page], str(tmp_path / "p5.pdf"))
    assert pages_of(tmp_path / "p5.pdf") == 1


def test_same_seed_same_numbers(trained, tmp_path):
    runs, _ = trained
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert run("--problem", "3", "--runs", str(runs), "--out", str(tmp_path / name), "--seed", seed) == 0
    a, b, c = (np.load(tmp_path / n / "problem3.npz") for n in "abc")
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    assert (tmp_path / "a" / "problem3.csv").read_text() == (tmp_path / "b" / "problem3.csv").read_text()
    assert not np.array_equal(a["samples"], c["samples"])


# ------------------------------------------------------------ bad input
def assert_clean_failure(rc, capsys, *words):
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err


def test_unknown_problem(tmp_path, capsys):
    rc = run("--problem", "7", "--out", str(tmp_path / "fig"), "--runs", str(tmp_path / "runs"))
    assert_clean_failure(rc, capsys, "--problem", "7")
    assert os.listdir(tmp_path) == []


def test_checkpoint_with_another_T(trained, tmp_path, capsys):
    runs, _ = trained
    (tmp_path / "runs" / "T5").mkdir(parents=True)
    shutil.copy(runs / "T50" / "model.pt", tmp_path / "runs" / "T5" / "model.pt")
    shutil.copytree(runs / "T50", tmp_path / "runs" / "T50")
    rc = run("--problem", "3", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "fig"))
    assert_clean_failure(rc, capsys, "T=50", "T=5", "python train.py --T 5")
    assert not (tmp_path / "fig").exists()


def test_corrupt_checkpoint(tmp_path, capsys):
    (tmp_path / "runs" / "T50").mkdir(parents=True)
    (tmp_path / "runs" / "T50" / "model.pt").write_bytes(b"\x80\x02 not a checkpoint")
    rc = run("--problem", "2", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "fig"))
    assert_clean_failure(rc, capsys, "model.pt", "retrain")
    assert not (tmp_path / "fig").exists()


def test_unwritable_output(trained, tmp_path, capsys):
    runs, _ = trained
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rc = run("--problem", "2", "--runs", str(runs), "--out", str(blocker / "figures"))
    assert_clean_failure(rc, capsys, "--out")
    rc = run("--problem", "2", "--runs", str(runs), "--out", str(tmp_path / "fig"), "--report", str(tmp_path))
    assert_clean_failure(rc, capsys, "--report")
    assert sorted(os.listdir(tmp_path)) == ["a_file", "fig"] and os.listdir(tmp_path / "fig") == []


def test_bad_option_values(tmp_path, capsys):
    for bad in (["--n", "0"], ["--Ts", "5,x"], ["--ws", "-1"], ["--density", "fft"]):
        rc = visualize.main(["--problem", "2", "--out", str(tmp_path / "fig"), *bad])
        assert_clean_failure(rc, capsys)
    assert os.listdir(tmp_path) == []


def test_help_explains_every_option(capsys):
    assert visualize.main(["--help"]) == 0
    assert "python visualize.py --problem all --report report.pdf" in capsys.readouterr().out
    for action in visualize.build_parser()._actions:
        assert action.help, action.dest


def test_problem_5_command_uses_mnist_problem5(tmp_path, monkeypatch, capsys):
    """`--problem 5` needs no two-pixel model and shows what mnist.problem5.problem5_page makes."""
    made = []

    def problem5_page(fig_dir, retrain=False):
        path = os.path.join(fig_dir, "problem5_grid.png")
        plt.imsave(path, np.zeros((8, 8)))
        made.append(path)
        return Page.of_text("Problem 5: MNIST", [path], "measured text")

    monkeypatch.setattr(visualize.mnist_problem5, "problem5_page", problem5_page)
    out = tmp_path / "fig"
    assert run("--problem", "5", "--out", str(out), "--runs", str(tmp_path / "no-runs"),
               "--report", str(tmp_path / "r.pdf")) == 0
    assert made and "problem5_grid.png" in capsys.readouterr().out
    assert not (tmp_path / "no-runs").exists()  # no two-pixel model was trained for it
    assert pages_of(tmp_path / "r.pdf") == 1


def _stub_pages(names):
    def pages(fig_dir, **kw):
        out = []
        for name in names:
            path = os.path.join(fig_dir, f"{name}.png")
            plt.imsave(path, np.zeros((8, 40)))  # short: FIG_W / 5 tall
            out.append(Page.of_text(name, [path], f"{name} text {sorted(kw)}"))
        return out
    return pages


def test_cs180_commands_make_one_page_per_section(tmp_path, monkeypatch, capsys):
    """The CS180 report opens with its reading guide, prints one line per part (no progress bars: b2_pages
    is asked for none), and lets short sections share a sheet."""
    monkeypatch.setattr(visualize.parta_pages, "pages", _stub_pages(["sdedit", "anagrams"]))
    monkeypatch.setattr(visualize.parta_pages, "opening_page", lambda: Page("CS180 opening", [], [("text", "guide")]))
    monkeypatch.setattr(visualize.partb_pages, "b1_pages", _stub_pages(["noising", "epochs", "ood"]))
    asked = []
    monkeypatch.setattr(visualize.partb_pages, "b2_pages",
                        lambda fig_dir, **kw: asked.append(kw) or _stub_pages(["b2"])(fig_dir, **kw))
    assert run("--problem", "cs180-a", "--out", str(tmp_path / "fig"), "--runs", str(tmp_path / "no-runs"),
               "--report", str(tmp_path / "a.pdf")) == 0
    assert "cs180-a: 2 sections" in capsys.readouterr().out and pages_of(tmp_path / "a.pdf") == 1  # 2 share a sheet
    assert run("--problem", "cs180", "--out", str(tmp_path / "fig"), "--runs", str(tmp_path / "no-runs"),
               "--report", str(tmp_path / "r.pdf"), "--jobs", "1") == 0  # in this process, where the stubs are
    out, err = capsys.readouterr()
    assert [line.split(":")[0] for line in out.splitlines()][:4] == ["cs180 opening", "cs180-a", "cs180-b1", "cs180-b2"]
    assert "cs180-b1: 3 sections" in out and "cs180-b2: 1 section in" in out and err == ""
    assert asked == [{"seed": 0, "progress": False}]  # a report prints one line per part, no bars
    assert pages_of(tmp_path / "r.pdf") < 7 and not (tmp_path / "no-runs").exists()  # 7 sections


def test_no_sheet_is_only_a_continued_title(tmp_path):
    """A page whose last line ends just above the bottom margin, with less room left than the space after a
    paragraph, fits one sheet (it once added a "(continued)" sheet holding only its title)."""
    line = pages.line_height("text")
    room = pages.PAGE_H - 2 * pages.MARGIN - pages.TITLE_H - pages.GAP - line - 2 / 72  # 2 pt left after the text
    png = tmp_path / "tall.png"
    plt.imsave(png, np.zeros((round(1000 * room / FIG_W), 1000)))
    assert 0 < pages.PAGE_H - 2 * pages.MARGIN - pages.TITLE_H - pages.image_height(str(png)) - pages.GAP - line \
        < pages.line_height("gap")
    figs = pages.render_page(Page.of_text("tall", [str(png)], "one line"))
    assert len(figs) == 1
    plt.close(figs[0])


def test_flow_lets_short_sections_share_a_sheet_and_never_splits_a_figure(tmp_path):
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    plt.imsave(small, np.zeros((200, 1000)))  # 0.2 FIG_W tall
    plt.imsave(big, np.zeros((900, 1000)))  # 0.9 FIG_W tall: two do not fit on a sheet
    shorts = [Page.of_text(f"short {i}", [str(small)], "text") for i in range(3)]
    assert len(pages.render_pages(shorts)) == 3 and len(pages.render_pages(shorts, flow=True)) == 1
    bigs = [Page.of_text(f"big {i}", [str(big)], "text") for i in range(2)]
    figs = pages.render_pages(bigs, flow=True)
    assert len(figs) == 2
    for fig in figs:
        assert len(fig.axes) == 1 and fig.axes[0].get_position().y0 * pages.PAGE_H >= pages.MARGIN - 1e-6
        plt.close(fig)


@pytest.mark.parametrize("part,module", [("cs180-b1", "denoiser"), ("cs180-b2", "timecond")])
def test_cs180_part_b_with_a_broken_checkpoint_is_one_line(tmp_path, monkeypatch, capsys, part, module):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"truncated")
    monkeypatch.setattr(getattr(visualize, module), "REFERENCE", str(bad))
    assert run("--problem", part, "--out", str(tmp_path / "fig"), "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("visualize.py: error:") and "broken.pt" in err[0]


def test_retrain_reaches_problem5_page(tmp_path, monkeypatch):
    seen = []

    def problem5_page(fig_dir, retrain=False):
        seen.append(retrain)
        return Page.of_text("Problem 5: MNIST", [], "text")

    monkeypatch.setattr(visualize.mnist_problem5, "problem5_page", problem5_page)
    assert run("--problem", "5", "--out", str(tmp_path), "--retrain") == 0
    assert run("--problem", "5", "--out", str(tmp_path)) == 0
    assert seen == [True, False]


def test_cs180_b1_retrain_trains_into_runs_and_uses_that_run(tmp_path, monkeypatch, capsys):
    """--retrain runs the module's own CLI into <runs>/cs180 and builds the page from what it wrote
    (the CLI is swapped for a tiny run: the real one takes minutes)."""
    seen = {}

    def tiny_main(argv):
        out = argv[argv.index("--out") + 1]
        cfg = dn.DenoiserConfig(hidden=2, epochs=1, batch_size=8)
        dn.save_run(os.path.join(out, "denoiser.pt"), dn.train_denoiser(torch.rand(8, 1, 28, 28), cfg), cfg)
        return 0

    def b1_pages(fig_dir, checkpoint=None, seed=0):
        seen["hidden"] = dn.load_run(checkpoint).config.hidden
        seen["path"] = checkpoint
        return []

    monkeypatch.setattr(dn, "main", tiny_main)
    monkeypatch.setattr(visualize.partb_pages, "b1_pages", b1_pages)
    assert run("--problem", "cs180-b1", "--retrain", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "f"),
               "--quiet") == 0
    assert seen == {"hidden": 2, "path": os.path.join(str(tmp_path / "runs"), "cs180", "denoiser.pt")}
    assert "training from scratch (python -m cs180.denoiser --out" in capsys.readouterr().out


def test_cs180_b2_retrain_trains_both_runs_and_uses_them(tmp_path, monkeypatch, capsys):
    """--retrain for B.2 trains the unconditional run into <runs>/cs180 and the class-conditioned one into
    <runs>/cs180/class (the CLI is swapped for a tiny run), and the pages read those two files."""
    import cs180.timecond as tc
    calls, seen = [], {}

    def tiny_main(argv):
        calls.append(argv)
        out = argv[argv.index("--out") + 1]
        cfg = tc.TimeCondConfig(hidden=2, T=4, epochs=1, batch_size=8, num_classes=10 if "--classes" in argv else 0)
        run = tc.train_timecond(torch.rand(8, 1, 28, 28) * 2 - 1, torch.arange(8), cfg, (1,))
        tc.save_run(os.path.join(out, "timecond.pt"), run, cfg)
        return 0

    def b2_pages(fig_dir, checkpoint=None, class_checkpoint=None, seed=0, progress=False):
        seen.update(uncond=checkpoint, cond=class_checkpoint,
                    classes=(tc.load_run(checkpoint).config.num_classes, tc.load_run(class_checkpoint).config.num_classes))
        return []

    monkeypatch.setattr(tc, "main", tiny_main)
    monkeypatch.setattr(visualize.partb_pages, "b2_pages", b2_pages)
    runs = tmp_path / "runs"
    assert run("--problem", "cs180-b2", "--retrain", "--runs", str(runs), "--out", str(tmp_path / "f"), "--quiet") == 0
    assert [("--classes" in a) for a in calls] == [False, True] and all("--overwrite" in a for a in calls)
    assert seen == {"uncond": str(runs / "cs180" / "timecond.pt"), "cond": str(runs / "cs180" / "class" / "timecond.pt"),
                    "classes": (0, 10)}
