"""Animations of the reverse process: frames as RGB arrays, written as one looping GIF through runio's one
atomic writer. Pillow writes it (matplotlib already needs Pillow: no new dependency).

    frames = render_frames(fig, update, items)    # a matplotlib figure redrawn once per item
    frames = image_frames(steps, columns=5)       # a grid of images at each step: x_t, and x0_hat beside it
    write_gif(path, frames)                       # looping, one shared palette, signed as the package's
    files[name] = gif_writer(frames)              # the same, as one file of a set (runio.files.write_all)

The frames of an animation come from the same arrays as the still figure beside it: each figure module
builds its frames' arrays first (a list of NamedTuples per t) and draws them here, and the tests compare
those arrays with the still's at the same t.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image, ImageDraw, ImageFont

from runio.files import MARK, replacing_all

MAX_BYTES = 2_000_000  # every animation stays under about 2 MB (a web page loads it at once)
FRAME_MS = 120  # per frame: a 40-frame chain runs in about 5 s
HOLD_MS = 1500  # the last frame (the result) stays this long before the loop starts again


def write_gif(path: str, frames: Sequence[np.ndarray], ms: int = FRAME_MS, hold_ms: int = HOLD_MS) -> str:
    """frames (H, W, 3) uint8, all one size, as a looping GIF at `path` (gif_writer), written atomically and
    never over a file of the user's. Returns path."""
    write = gif_writer(frames, ms, hold_ms)
    with replacing_all([path], ours_only=True) as (tmp,):
        write(tmp)
    return path


def gif_writer(frames: Sequence[np.ndarray], ms: int = FRAME_MS, hold_ms: int = HOLD_MS) -> Callable[[str], None]:
    """write(path) for a set of files written together (runio.files.write_all): the frames as a GIF that loops
    for ever, one palette of 256 colours for all frames (so colours do not flicker), each frame ms long and the
    last held hold_ms, signed with the package's mark (a GIF comment, which runio.files.ours reads)."""
    if not len(frames):
        raise ValueError("an animation needs at least one frame")
    sample = np.concatenate([frames[0], frames[len(frames) // 2], frames[-1]], axis=0)
    palette = Image.fromarray(sample).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(np.ascontiguousarray(f)).quantize(palette=palette, dither=Image.Dither.NONE)
              for f in frames]
    durations = [ms] * (len(images) - 1) + [hold_ms]

    def write(path: str) -> None:
        images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0,
                       comment=MARK)

    return write


def render_frames(fig, update: Callable, items: Sequence) -> list:
    """RGB frames (H, W, 3) uint8 of the matplotlib figure `fig` (object API, drawn by Agg), after
    update(item) for each item in turn."""
    canvas = FigureCanvasAgg(fig)
    frames = []
    for item in items:
        update(item)
        canvas.draw()
        frames.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    return frames


# ======================================================== image grids: x_t and x0_hat
class ImageStep(NamedTuple):
    """One frame's arrays: the state x_t and the clean image x0_hat predicted from it."""

    t: int
    x: np.ndarray  # (N, C, H, W) x_t, pixels in about [-1, 1]
    x0_hat: Optional[np.ndarray]  # (N, C, H, W) in [-1, 1], or None (the frame shows x_t only)


def trajectory_steps(t, x, x0_hat=None, count: int = 40, include: Sequence[int] = ()) -> list:
    """ImageSteps of a utils.Trajectory's arrays (t (S+1,) descending to 0, x and x0_hat (S+1, N, C, H, W)):
    `count` of its steps spread evenly from the first to the last, and every step whose t is in `include`
    (the still figure's times). x0_hat None: x_t only."""
    t = [int(v) for v in t]
    S = len(t) - 1
    k = min(count, S + 1)
    keep = {round(i * S / max(1, k - 1)) for i in range(k)} | {t.index(v) for v in include if v in t}
    as_np = lambda a: a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
    return [ImageStep(t[i], as_np(x[i]), None if x0_hat is None else as_np(x0_hat[i])) for i in sorted(keep)]


def tile(images: np.ndarray, columns: int, scale: int, pad: int = 2) -> np.ndarray:
    """Images (N, C, H, W) in [-1, 1] as one RGB grid (rows of `columns`), each pixel scale x scale, white gaps."""
    n, c, h, w = images.shape
    rows = -(-n // columns)
    unit = np.clip((images + 1) * 127.5, 0, 255).astype(np.uint8)
    unit = np.repeat(unit, 3, axis=1) if c == 1 else unit[:, :3]
    unit = unit.transpose(0, 2, 3, 1).repeat(scale, axis=1).repeat(scale, axis=2)  # (N, H*s, W*s, 3)
    H, W = h * scale + pad, w * scale + pad
    out = np.full((rows * H + pad, columns * W + pad, 3), 255, np.uint8)
    for i in range(n):
        r, k = divmod(i, columns)
        out[pad + r * H: pad + r * H + h * scale, pad + k * W: pad + k * W + w * scale] = unit[i]
    return out


def image_frames(steps: Sequence[ImageStep], columns: int, scale: int = 2, title: str = "") -> list:
    """RGB frames of ImageSteps: the grid of x_t, and beside it the grid of x0_hat, under a line of text
    with t (and `title`)."""
    font = ImageFont.load_default(size=14)
    frames = []
    for s in steps:
        grids = [tile(s.x, columns, scale)] + ([tile(s.x0_hat, columns, scale)] if s.x0_hat is not None else [])
        gap = 16
        h = grids[0].shape[0]
        w = sum(g.shape[1] for g in grids) + gap * (len(grids) - 1)
        canvas = Image.new("RGB", (w, h + 40), "white")
        draw = ImageDraw.Draw(canvas)
        draw.text((2, 2), f"t = {s.t}" + (f"   {title}" if title else ""), fill="black", font=font)
        x = 0
        for g, name in zip(grids, ("x_t", "predicted x_0 (x0_hat)")):
            canvas.paste(Image.fromarray(g), (x, 40))
            draw.text((x + 2, 21), name, fill="#333333", font=font)
            x += g.shape[1] + gap
        frames.append(np.asarray(canvas))
    return frames
