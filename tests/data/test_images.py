"""Image loading: every mode Pillow reads, EXIF orientation, alpha policies, broken files."""

import io

import numpy as np
import pytest
from PIL import Image

from jaguar_reid.data import ImageLoadError, load_image


def _saved(tmp_path, image, name, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "CMYK", "1", "LA", "RGBA", "I;16", "I", "F"])
def test_every_mode_loads_as_rgb(tmp_path, mode):
    image = Image.new("RGB", (10, 6), (200, 100, 50)).convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    path = _saved(tmp_path, image, f"x.{fmt.lower()}", format=fmt)
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (10, 6)


def test_16_bit_png_keeps_its_range(tmp_path):
    array = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    path = _saved(tmp_path, Image.fromarray(array), "deep.png")
    assert Image.open(path).mode.startswith("I")
    loaded = np.asarray(load_image(path))
    assert loaded[..., 0].min() == 0 and loaded[..., 0].max() == 255


def test_jpeg_under_png_name(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (12, 12), (10, 200, 30)).save(buffer, format="JPEG")
    path = tmp_path / "liar.png"
    path.write_bytes(buffer.getvalue())
    assert np.abs(np.asarray(load_image(path)).astype(int) - [10, 200, 30]).max() < 8


def test_exif_orientation_applied(tmp_path):
    image = Image.new("RGB", (20, 10), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = _saved(tmp_path, image, "rotated.jpg", exif=exif)
    assert load_image(path).size == (10, 20)


def _cutout():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = (90, 60, 30)  # stored RGB everywhere (background included)
    rgba[:2, :, 3] = 255  # top half is the animal
    return Image.fromarray(rgba, mode="RGBA")


@pytest.mark.parametrize("policy, background", [("keep", (90, 60, 30)), ("black", (0, 0, 0)), ("gray", (128, 128, 128)), ("white", (255, 255, 255))])
def test_alpha_policies(tmp_path, policy, background):
    path = _saved(tmp_path, _cutout(), "cut.png")
    pixels = np.asarray(load_image(path, alpha=policy))
    assert pixels[0, 0].tolist() == [90, 60, 30]
    assert pixels[3, 3].tolist() == list(background)


def test_noise_background_is_random_but_repeatable(tmp_path):
    path = _saved(tmp_path, _cutout(), "cut.png")
    first, second = np.asarray(load_image(path, "noise")), np.asarray(load_image(path, "noise"))
    assert first[0, 0].tolist() == [90, 60, 30]
    assert np.array_equal(first, second)
    assert len(np.unique(first[2:].reshape(-1, 3), axis=0)) > 1


def test_palette_with_transparency_uses_alpha(tmp_path):
    image = _cutout().convert("P")
    image.info["transparency"] = image.getpixel((3, 3))
    path = _saved(tmp_path, image, "pal.png", transparency=image.getpixel((3, 3)))
    assert np.asarray(load_image(path, "white"))[3, 3].tolist() == [255, 255, 255]


def test_truncated_file_names_itself(tmp_path):
    path = _saved(tmp_path, Image.new("RGB", (64, 64), (1, 2, 3)), "broken.png")
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ImageLoadError, match=r"broken\.png: cannot read image"):
        load_image(path)


def test_garbage_file_names_itself(tmp_path):
    path = tmp_path / "noise.jpg"
    path.write_bytes(b"not an image at all")
    with pytest.raises(ImageLoadError, match=r"noise\.jpg: cannot read image"):
        load_image(path)
