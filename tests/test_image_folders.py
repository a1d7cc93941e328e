"""image_diffusion.data on folders of images under faults (issue 24): every real file counted once
(links followed, loops not), every skipped file counted by reason in one line, 16-bit, palette and
transparent images converted to the right pixels, GIFs read, and an image too large to decode refused
as one line (exit status 2, nothing written to --out). Nothing may hang: what could runs under an alarm."""
import contextlib
import errno
import os
import re
import signal
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from torchvision import datasets

from image_diffusion import data as image_data
from image_diffusion import train as train_cli
from image_diffusion.data import DataError, load_images

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_ARGS = ["--steps", "2", "--batch-size", "4", "--base", "8", "--mults", "1,2,2", "--attn-resolutions", "none",
             "--T", "20", "--dropout", "0", "--warmup", "0", "--sample-n", "2", "--sample-steps", "2", "--quiet"]
GREY = 0x8000  # mid-grey in 16 bits: 128 in 8 bits, 0.004 on [-1, 1]


class Hung(BaseException):
    """Raised by the alarm: a BaseException, so that no `except Exception` of the code under test hides it."""


@contextlib.contextmanager
def deadline(seconds: int = 30):
    """Fail instead of hanging the suite when the block takes longer than `seconds`."""
    def stop(signum, frame):
        raise Hung(f"still running after {seconds} s")
    before = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


def write_image(path, color=(128, 128, 128)):
    """A 40x36 RGB image of one colour, its format by its extension."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (40, 36), color).save(path)


def two_classes(root, n: int = 6):
    """root/a, root/b: n distinct 40x36 RGB PNGs each."""
    for c, label in (("a", 0), ("b", 1)):
        for i in range(n):
            write_image(os.path.join(root, c, f"{i}.png"), (10 * i, 100 * label, 50))
    return str(root)


def write_png16(path, pixels: np.ndarray, color_type: int):
    """A 16-bit PNG written byte by byte (PIL cannot write 16-bit RGB): pixels uint16 (H, W) for greyscale
    (color_type 0), (H, W, 3) RGB (2), (H, W, 4) RGBA (6)."""
    h, w = pixels.shape[:2]
    rows = b"".join(b"\0" + pixels[y].astype(">u2").tobytes() for y in range(h))
    write_png_chunks(path, w, h, 16, color_type, zlib.compress(rows))


def write_png_chunks(path, width: int, height: int, depth: int, color_type: int, idat: bytes):
    """A PNG of this header and these compressed rows (which may be too few: PIL reads the header first)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def train(argv, capsys):
    """image_diffusion.train.main(argv) under a deadline: (exit status, stdout lines, stderr lines)."""
    with deadline(60):
        code = train_cli.main(argv)
    out, err = capsys.readouterr()
    return code, out.strip().splitlines(), err.strip().splitlines()


# ------------------------------------------------------------ links and loops
def test_a_link_loop_is_followed_once_by_the_command(tmp_path, capsys):
    """The probe: D/a, D/b (6 images each) and D/loop -> D gave '492 images, 3 classes'."""
    data = two_classes(tmp_path / "D")
    os.symlink(".", os.path.join(data, "loop"))
    out = str(tmp_path / "run")
    code, stdout, stderr = train(["--preset", "cifar10-32", "--data", data, "--out", out, *TINY_ARGS], capsys)
    assert code == 0, stderr
    assert stdout[0].startswith(f"data folder {data}: 12 images, 2 classes, 3x32x32; UNet "), stdout
    assert stderr == [f"folder {data}: skipped 1 file: 1 link loop (loop)"]


def test_a_link_to_a_parent_folder_does_not_hang(tmp_path, capsys):
    """The probe: D/a/up -> D made the command hang without a word."""
    data = two_classes(tmp_path / "D")
    os.symlink("..", os.path.join(data, "a", "up"))
    os.symlink(os.path.dirname(data), os.path.join(data, "b", "above"))  # a folder that holds D
    with deadline(30):
        images = load_images(data)
    assert (len(images), images.num_classes) == (12, 2)
    assert capsys.readouterr().err == f"folder {data}: skipped 2 files: 2 link loops (a/up, b/above)\n"


def test_links_to_what_is_counted_already_count_once(tmp_path, capsys):
    """A class folder linked to another class folder, a link to a counted image and a broken link add nothing;
    a class folder and an image linked from outside the folder count, once each."""
    data = two_classes(tmp_path / "D")
    pool = tmp_path / "pool"
    for i in range(3):
        write_image(str(pool / f"{i}.png"), (0, 0, 20 * i))
    os.symlink("a", os.path.join(data, "c"))  # class c is class a again
    os.symlink(os.path.join("..", "a", "0.png"), os.path.join(data, "b", "again.png"))
    os.symlink(str(pool), os.path.join(data, "d"))  # class d lives elsewhere
    os.symlink(str(pool / "0.png"), os.path.join(data, "b", "pooled.png"))  # d/0.png: counted in class d
    os.symlink(str(tmp_path / "gone.png"), os.path.join(data, "b", "gone.png"))
    write_image(str(tmp_path / "single.png"))
    os.symlink(str(tmp_path / "single.png"), os.path.join(data, "b", "single.png"))
    with deadline(30):
        images = load_images(data)
    assert (len(images), images.num_classes) == (6 + 7 + 3, 3)
    assert [y for _, y in images.base.samples] == [0] * 6 + [1] * 7 + [2] * 3
    assert os.path.join(data, "b", "single.png") in [path for path, _ in images.base.samples]
    assert capsys.readouterr().err == (f"folder {data}: skipped 4 files: 3 duplicate links (b/again.png, b/pooled.png, "
                                       "c), 1 broken link (b/gone.png)\n")


# --------------------------------------------------------- skipped, by reason
def test_every_skipped_file_is_counted_in_one_line(tmp_path, capsys):
    """A flat folder: what is not read is counted by reason, printed once on stderr."""
    data = str(tmp_path / "flat")
    for i in range(2):
        write_image(os.path.join(data, f"{i}.png"))
    for name in ("notes.txt", "labels.txt", "README.md", ".DS_Store", "._0.png"):  # ._0.png: macOS's metadata
        with open(os.path.join(data, name), "w") as f:
            f.write("not an image\n")
    write_image(os.path.join(data, "more", "2.png"))  # a nested folder: a flat folder has no classes
    os.mkfifo(os.path.join(data, "pipe.png"))  # opening it would wait forever for a writer
    with deadline(30):
        images = load_images(data)
        assert [images[i][0].shape for i in range(len(images))] == [(3, 32, 32)] * 2
    line = (f"folder {data}: skipped 6 files: 3 not images (.md, .txt), 1 hidden (._0.png), 1 nested folder (more), "
            "1 not a regular file (pipe.png)")  # hidden: only what is named like an image, not .DS_Store
    assert capsys.readouterr().err == line + "\n"
    assert images.skipped == line  # for a caller that prints it itself: load_images(..., verbose=False)


def test_nothing_skipped_prints_nothing(tmp_path, capsys):
    images = load_images(two_classes(tmp_path / "D"))
    assert (len(images), capsys.readouterr().err) == (12, "")


def test_a_special_file_in_a_class_folder_does_not_hang(tmp_path, capsys):
    data = two_classes(tmp_path / "D", n=2)
    os.mkfifo(os.path.join(data, "a", "pipe.png"))
    with deadline(30):
        images = load_images(data)
        assert len(images) == 4 and all(images[i][0].shape == (3, 32, 32) for i in range(4))
    assert capsys.readouterr().err == f"folder {data}: skipped 1 file: 1 not a regular file (a/pipe.png)\n"


def test_a_class_folder_without_images_is_skipped(tmp_path, capsys):
    """Jupyter's .ipynb_checkpoints is not a class (nor worth a word), nor is a folder without images."""
    data = two_classes(tmp_path / "D", n=2)
    os.makedirs(os.path.join(data, ".ipynb_checkpoints"))
    os.makedirs(os.path.join(data, "empty"))
    images = load_images(data)
    assert (len(images), images.num_classes) == (4, 2)
    assert capsys.readouterr().err == f"folder {data}: skipped 1 file: 1 empty folder (empty)\n"


def test_a_folder_that_cannot_be_listed_is_one_line(tmp_path, monkeypatch):
    """A class folder without read permission (simulated: root may read any folder) is named, not skipped."""
    data = two_classes(tmp_path / "D", n=2)
    scandir, locked = os.scandir, os.path.join(data, "b")

    def refuse(path="."):
        if os.fspath(path) == locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return scandir(path)
    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(DataError, match=f"^cannot read the folder {locked} \\(Permission denied\\); make it readable"):
        load_images(data)


# --------------------------------------------------------------- pixel values
def grey16_png(path):
    Image.fromarray(np.full((36, 40), GREY, np.uint16)).save(path)  # PIL writes mode I;16 as a 16-bit PNG


SIXTEEN_BIT = {  # name: writer of a mid-grey image with more than 8 bits a channel
    "grey I;16 PNG": grey16_png,
    "grey 16-bit PNG, byte by byte": lambda p: write_png16(p, np.full((36, 40), GREY, np.uint16), 0),
    "RGB 48-bit PNG": lambda p: write_png16(p, np.full((36, 40, 3), GREY, np.uint16), 2),
    "RGBA 64-bit PNG": lambda p: write_png16(p, np.dstack([np.full((36, 40, 3), GREY), np.full((36, 40), 65535)]), 6),
    "grey 16-bit TIFF": lambda p: Image.fromarray(np.full((36, 40), GREY, np.uint16)).save(p[:-4] + ".tif"),
    "grey 32-bit int TIFF (mode I)": lambda p: Image.fromarray(np.full((36, 40), GREY, np.int32)).save(p[:-4] + ".tif"),
}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", list(SIXTEEN_BIT))
def test_16_bit_images_keep_their_grey(kind, channels, tmp_path):
    """The probe: a mid-grey 16-bit PNG was trained as white (0.99 on [-1, 1])."""
    SIXTEEN_BIT[kind](str(tmp_path / "grey.png"))
    x, _ = load_images(str(tmp_path), channels=channels)[0]
    assert x.shape == (channels, 32, 32)
    assert x.abs().max() < 0.01, x.mean()  # 128/255 -> 0.004


def palette(color, transparent: bool = False) -> Image.Image:
    img = Image.new("P", (40, 36), 1)
    img.putpalette([0, 0, 0, *color] + [0] * 762)
    if transparent:
        img.info["transparency"] = 1
    return img


def write(img: Image.Image):
    return lambda p: img.save(p)


ALPHA_WHITE = (1.0, 1.0, 1.0)
MODES = {  # name: (writer of a 40x36 image, the RGB it must read as on [-1, 1]); transparency is white
    "palette": (write(palette((255, 0, 128))), (1.0, -1.0, 0.004)),
    "palette, transparent": (write(palette((0, 0, 0), transparent=True)), ALPHA_WHITE),
    "grey + alpha, transparent": (write(Image.new("LA", (40, 36), (0, 0))), ALPHA_WHITE),
    "RGBA opaque red": (write(Image.new("RGBA", (40, 36), (255, 0, 0, 255))), (1.0, -1.0, -1.0)),
    "RGBA transparent": (write(Image.new("RGBA", (40, 36), (0, 0, 0, 0))), ALPHA_WHITE),
    "RGBA half-transparent black": (write(Image.new("RGBA", (40, 36), (0, 0, 0, 128))), (-0.004,) * 3),
    "bilevel": (write(Image.new("1", (40, 36), 1)), ALPHA_WHITE),
    "CMYK cyan": (lambda p: Image.new("CMYK", (40, 36), (255, 0, 0, 0)).save(p[:-4] + ".jpg", quality=100),
                  (-1.0, 1.0, 1.0)),
}


@pytest.mark.parametrize("kind", list(MODES))
def test_palette_and_alpha_images_read_as_they_look(kind, tmp_path):
    writer, rgb = MODES[kind]
    writer(str(tmp_path / "x.png"))
    x, _ = load_images(str(tmp_path))[0]
    assert np.allclose(x.mean((1, 2)).numpy(), rgb, atol=0.02), x.mean((1, 2))


def test_palette_alpha_in_memory():
    """Mode PA (PIL opens no file as it, but an image may carry it): transparent is white, opaque its colour."""
    img = palette((0, 255, 0)).convert("PA")
    img.putalpha(Image.new("L", img.size, 0))
    assert image_data.to_rgb(img).getpixel((0, 0)) == (255, 255, 255)
    assert image_data.to_rgb(palette((0, 255, 0)).convert("PA")).getpixel((0, 0)) == (0, 255, 0)


def test_a_gif_is_read_by_its_first_frame(tmp_path, capsys):
    """The probe: GIFs were skipped without a word."""
    write_image(str(tmp_path / "a.png"), (0, 0, 255))
    red, blue = Image.new("RGB", (40, 36), (255, 0, 0)), Image.new("RGB", (40, 36), (0, 0, 255))
    red.save(tmp_path / "b.gif", save_all=True, append_images=[blue], duration=100)
    images = load_images(str(tmp_path))
    assert (len(images), capsys.readouterr().err) == (2, "")
    assert np.allclose(images[1][0].mean((1, 2)).numpy(), (1, -1, -1), atol=0.02)


# -------------------------------------------------------------------- refused
@pytest.mark.parametrize("side", [20000, 10000])  # over 2x PIL's pixel limit (its error), and over 1x (its warning)
def test_an_image_too_large_to_decode_is_one_line(side, tmp_path, capsys):
    """The probe: a 20000x20000 PNG ended in DecompressionBombError's traceback, exit status 1. Only its
    header is written: PIL refuses it on opening, before decoding a pixel."""
    data = tmp_path / "in"
    for i in range(3):
        write_image(str(data / f"{i}.png"))
    write_png_chunks(str(data / "huge.png"), side, side, 8, 0, zlib.compress(b"\0" * 1000))
    out = str(tmp_path / "run")
    code, stdout, stderr = train(["--preset", "cifar10-32", "--data", str(data), "--out", out, *TINY_ARGS], capsys)
    assert code == 2 and len(stderr) == 1, stderr
    assert re.fullmatch(rf"image_diffusion.train: error: cannot read {data}/huge.png \(DecompressionBomb\w+: "
                        rf"[^)]*\({side * side} pixels\) exceeds limit[^;]*; .*", stderr[0]), stderr[0]
    assert not os.path.exists(out)


def test_class_folders_keep_imagefolders_order(tmp_path):
    """Images and labels in torchvision ImageFolder's order (what the loader used before), so that a run
    begun before reads the same image at each position when resumed."""
    data = tmp_path / "D"
    for path in ("b/x/1.png", "b/x-y/0.png", "b/x/0.png", "b/2.png", "a/z/0.png", "a/0.PNG", "a/1.jpg"):
        write_image(str(data / path))
    images = load_images(str(data))
    assert images.base.samples == datasets.ImageFolder(str(data)).samples
