"""Synthetic jaguars: a complete Kaggle-format competition generated from a seed.

Each identity owns two procedurally generated rosette coats (left and right flank differ, as on
real jaguars). Each image renders one flank onto an animal silhouette under a random pose,
scale, crop, lighting, colour cast, blur, noise and partial occlusion, and is saved as an RGBA
cut-out whose stored RGB still holds the background (so the alpha policy matters).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from ..files import atomic_path

# Fitted to the real competition: 31 identities, 13 to 183 images each, median 45.
_MEDIAN_IMAGES, _LOG_SPREAD, _MIN_IMAGES, _MAX_IMAGES = 45.0, 0.655, 13, 183
_TEST_FRACTION = 371 / (1895 + 371)
_FRAME = (320, 200)  # body frame (width, height) in which coat and silhouette are drawn
_NAMES = (
    "Abaeté Aruanã Bororo Caiçara Camila Guaraci Iara Ipepo Jaci Juruna Kaiowá Marcela Medrosa "
    "Mutum Nhanderu Ousado Pixana Poti Saci Sapucaí Tainá Tapira Tupã Ubirajara Xamã Yara "
    "Bernard Juma Anahí Ajuricaba Potira Moacir Apoena Iberê Jurema Kauê Raoni Tibiriçá Iracema"
).split()


def identity_image_counts(n_identities: int, scale: float = 1.0) -> list[int]:
    """Long-tailed counts: log-normal quantiles clipped to the real 13..183 range, then scaled."""
    counts = []
    for i in range(n_identities):
        z = NormalDist().inv_cdf((i + 0.5) / n_identities)
        full = int(np.clip(round(_MEDIAN_IMAGES * math.exp(_LOG_SPREAD * z)), _MIN_IMAGES, _MAX_IMAGES))
        counts.append(max(4, round(full * scale)))
    return counts[::-1]


def identity_names(n_identities: int) -> list[str]:
    """``n`` jaguar names (Pantanal-style), distinct and repeatable."""
    return [
        _NAMES[i] if i < len(_NAMES) else f"{_NAMES[i % len(_NAMES)]}-{i // len(_NAMES) + 1}"
        for i in range(n_identities)
    ]


def _coat(rng: np.random.Generator, ground: np.ndarray, style: dict) -> Image.Image:
    """A rosette coat: broken rings of dark spots around a lighter centre, plus solid spots."""
    width, height = _FRAME
    yy = np.linspace(0, 1, height)[:, None, None]
    base = ground[None, None, :] * (0.85 + 0.3 * yy)  # lighter towards the belly
    coat = Image.fromarray(np.clip(np.broadcast_to(base, (height, width, 3)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(coat)
    dark = style["dark"]
    light = tuple(int(min(255, v * 1.12)) for v in ground)
    cols, rows = style["grid"]
    for r in range(rows):
        for c in range(cols):
            if rng.random() < 0.15:
                continue
            cx = (c + 0.5 + rng.uniform(-0.35, 0.35)) * width / cols
            cy = (r + 0.5 + rng.uniform(-0.35, 0.35)) * height / rows
            radius = style["radius"] * rng.uniform(0.8, 1.2)
            draw.ellipse([cx - radius * 0.7, cy - radius * 0.6, cx + radius * 0.7, cy + radius * 0.6], fill=light)
            n_blobs = int(rng.integers(4, 8))
            start = rng.uniform(0, 2 * math.pi)
            for b in range(n_blobs):
                if rng.random() < 0.2:  # broken ring
                    continue
                angle = start + 2 * math.pi * b / n_blobs
                bx, by = cx + radius * math.cos(angle), cy + radius * 0.85 * math.sin(angle)
                size = rng.uniform(0.18, 0.32) * radius
                draw.ellipse([bx - size, by - size * 0.7, bx + size, by + size * 0.7], fill=dark)
            for _ in range(int(rng.integers(0, 3))):
                dx, dy = rng.uniform(-0.35, 0.35, size=2) * radius
                draw.ellipse([cx + dx - 2, cy + dy - 2, cx + dx + 2, cy + dy + 2], fill=dark)
    for _ in range(style["solid_spots"]):
        sx, sy = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(2, 5)
        draw.ellipse([sx - size, sy - size, sx + size, sy + size], fill=dark)
    return coat


def _silhouette(rng: np.random.Generator) -> Image.Image:
    """An animal outline in the body frame, head towards the left."""
    width, height = _FRAME
    mask = Image.new("L", _FRAME, 0)
    draw = ImageDraw.Draw(mask)
    body_h = rng.uniform(0.36, 0.44) * height
    draw.ellipse([0.18 * width, 0.5 * height - body_h, 0.88 * width, 0.5 * height + body_h * 0.8], fill=255)
    head = rng.uniform(0.11, 0.14) * width
    hx, hy = 0.14 * width, 0.42 * height + rng.uniform(-12, 12)
    draw.ellipse([hx - head, hy - head * 0.85, hx + head, hy + head * 0.85], fill=255)
    for x in (0.26, 0.36, 0.7, 0.8):
        lx = x * width + rng.uniform(-6, 6)
        draw.rectangle([lx - 11, 0.6 * height, lx + 11, height - rng.uniform(0, 12)], fill=255)
    draw.line([0.86 * width, 0.45 * height, width, 0.35 * height + rng.uniform(-30, 40)], fill=255, width=12)
    return mask


@dataclass
class _Identity:
    name: str
    coats: tuple[Image.Image, Image.Image]  # left, right
    silhouette_seed: int


def _make_identity(name: str, seed: int, index: int) -> _Identity:
    rng = np.random.default_rng([seed, index, 0])
    # An individual's coat style (ground tone, rosette size and density, spot colour) is shared by
    # both flanks; the layout of rosettes differs between flanks, as on real jaguars.
    ground = np.array([rng.uniform(170, 235), rng.uniform(110, 175), rng.uniform(45, 110)])
    style = {
        "dark": tuple(int(v) for v in rng.integers(5, 60, size=3)),
        "grid": (int(rng.integers(4, 8)), int(rng.integers(2, 5))),
        "radius": float(rng.uniform(13, 26)),
        "solid_spots": int(rng.integers(5, 35)),
    }
    return _Identity(name, (_coat(rng, ground, style), _coat(rng, ground, style)), int(rng.integers(2**31)))


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    low = rng.uniform(20, 120, size=3)
    high = rng.uniform(60, 200, size=3)
    t = np.linspace(0, 1, height)[:, None, None]
    image = low * (1 - t) + high * t + rng.normal(0, 18, size=(height, width, 3))
    return np.broadcast_to(image, (height, width, 3))


def render_image(identity: _Identity, rng: np.random.Generator) -> Image.Image:
    """One RGBA cut-out of one flank of ``identity`` under random viewing conditions."""
    flank = int(rng.integers(2))
    coat = identity.coats[flank]
    mask = _silhouette(np.random.default_rng([identity.silhouette_seed, int(rng.integers(8))]))
    if flank == 1:  # the right flank is seen with the head to the right
        coat, mask = coat.transpose(Image.Transpose.FLIP_LEFT_RIGHT), mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    size = (int(rng.integers(176, 225)), int(rng.integers(128, 177)))
    scale = rng.uniform(0.65, 0.95) * size[0] / _FRAME[0]
    angle = math.radians(rng.uniform(-15, 15))
    shear = rng.uniform(-0.15, 0.15)
    # Inverse affine (canvas -> body frame), centred, with a random offset: pose, scale and crop.
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    offset = rng.uniform(-0.15, 0.15, size=2) * np.array(size)
    cx, cy = size[0] / 2 + offset[0], size[1] / 2 + offset[1]
    a, b = cos, sin + shear / scale
    d, e = -sin, cos
    matrix = (a, b, _FRAME[0] / 2 - a * cx - b * cy, d, e, _FRAME[1] / 2 - d * cx - e * cy)
    coat = coat.transform(size, Image.Transform.AFFINE, matrix, resample=Image.Resampling.BILINEAR)
    mask = mask.transform(size, Image.Transform.AFFINE, matrix, resample=Image.Resampling.BILINEAR)

    pixels = np.asarray(coat, dtype=np.float64)
    height, width = pixels.shape[:2]
    direction = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(direction) * np.linspace(-1, 1, width)[None, :] + np.sin(direction) * np.linspace(-1, 1, height)[:, None])
    light = rng.uniform(0.75, 1.2) + rng.uniform(0.0, 0.25) * ramp
    cast = rng.uniform(0.9, 1.1, size=3)
    pixels = pixels * light[..., None] * cast
    alpha = np.asarray(mask, dtype=np.float64)[..., None] / 255.0
    pixels = alpha * pixels + (1 - alpha) * _background(rng, size)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

    if rng.random() < 0.35:  # vegetation in front of the animal
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 4))):
            colour = tuple(int(v) for v in rng.integers([20, 60, 10], [90, 140, 60]))
            x0 = rng.uniform(0, width)
            draw.line([x0, 0, x0 + rng.uniform(-60, 60), height], fill=colour, width=int(rng.integers(4, 14)))
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    noisy = np.asarray(image, dtype=np.float64) + rng.normal(0, rng.uniform(0, 8), size=(height, width, 3))
    rgba = np.dstack([np.clip(noisy, 0, 255).astype(np.uint8), np.asarray(mask)])
    return Image.fromarray(rgba, mode="RGBA")


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def make_demo_data(out: str | Path, identities: int = 31, scale: float = 1.0, seed: int = 0) -> Path:
    """Write a synthetic competition to ``out``; returns ``out``. Deterministic for a seed.

    Layout: train.csv, train/train/*.png, test.csv (all ordered pairs of distinct test images),
    test/test/*.png, sample_submission.csv and test_labels.csv (the answer).
    """
    out = Path(out)
    if identities < 2:
        raise ValueError("make-demo-data needs at least 2 identities")
    for folder in ("train", "test"):
        shutil.rmtree(out / folder, ignore_errors=True)
    train_dir, test_dir = out / "train" / "train", out / "test" / "test"
    train_dir.mkdir(parents=True)
    test_dir.mkdir(parents=True)

    counts = identity_image_counts(identities, scale)
    names = identity_names(identities)
    test_order = np.random.default_rng([seed, 10**6]).permutation(
        sum(max(2, round(_TEST_FRACTION * c)) for c in counts)
    )
    train_rows, test_rows = [], []
    progress = tqdm(total=sum(counts), desc="rendering synthetic jaguars", unit="img")
    for index, (name, count) in enumerate(zip(names, counts)):
        identity = _make_identity(name, seed, index)
        n_test = max(2, round(_TEST_FRACTION * count))
        for k in range(count):
            image = render_image(identity, np.random.default_rng([seed, index, k + 1]))
            if k < n_test:
                filename = f"test_{test_order[len(test_rows)]:05d}.png"
                image.save(test_dir / filename)
                test_rows.append((filename, name))
            else:
                filename = f"train_{len(train_rows):05d}.png"
                image.save(train_dir / filename)
                train_rows.append((filename, name))
            progress.update()
    progress.close()

    train = pd.DataFrame(train_rows, columns=["filename", "ground_truth"])
    labels = pd.DataFrame(sorted(test_rows), columns=["filename", "ground_truth"])
    files = labels["filename"].to_numpy()
    query, gallery = np.meshgrid(np.arange(len(files)), np.arange(len(files)), indexing="ij")
    keep = query != gallery
    pairs = pd.DataFrame({"query_image": files[query[keep]], "gallery_image": files[gallery[keep]]})
    pairs.insert(0, "row_id", np.arange(len(pairs)))
    _write_csv(train, out / "train.csv")
    _write_csv(pairs, out / "test.csv")
    _write_csv(labels, out / "test_labels.csv")
    _write_csv(pd.DataFrame({"row_id": pairs["row_id"], "similarity": 0.5}), out / "sample_submission.csv")
    return out
