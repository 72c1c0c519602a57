"""The audit's measures: exact and perceptual hashes, hash pairs, nearest neighbours and image quality."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lit_vision.auditing.hashing import content_hashes, exact_groups, hash_pairs, perceptual_hashes
from lit_vision.auditing.neighbours import nearest, relative_threshold
from lit_vision.auditing.quality import QualitySettings, file_stats, image_stats, quality_issues
from lit_vision.errors import ConfigError


def blobs(rng: np.random.Generator, n: int, size: int = 32, channels: int = 3) -> np.ndarray:
    """Smooth random structure: coarse random grids upsampled bicubically."""
    coarse = torch.from_numpy(rng.uniform(0, 255, (n, channels, 6, 6)).astype(np.float32))
    smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return smooth.clamp(0, 255).round().to(torch.uint8).numpy()


def noise(rng: np.random.Generator, n: int, low: int = 0, high: int = 256, channels: int = 3) -> np.ndarray:
    return rng.integers(low, high, (n, channels, 32, 32), dtype=np.uint8)


def read_only(images: np.ndarray) -> np.ndarray:
    images = images.copy()
    images.flags.writeable = False
    return images


def reencoded(image: np.ndarray) -> np.ndarray:
    """JPEG at quality 75, then resized 32 -> 40 -> 32 pixels."""
    buffer = io.BytesIO()
    Image.fromarray(image.transpose(1, 2, 0)).save(buffer, format="JPEG", quality=75)
    img = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    img = img.resize((40, 40), Image.Resampling.BILINEAR).resize((32, 32), Image.Resampling.BILINEAR)
    return np.asarray(img).transpose(2, 0, 1)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Brute-force Hamming distances of every a against every b."""
    xor = a[:, None] ^ b[None, :]
    return np.unpackbits(xor.view(np.uint8).reshape(len(a), len(b), 8), axis=2).sum(axis=2)


def test_exact_pairs_within_and_across_sets() -> None:
    rng = np.random.default_rng(0)
    a, b = noise(rng, 10), noise(rng, 4)
    a[7] = a[2]
    a[9] = a[2]
    b[0], b[1] = a[2], a[3]
    ha, hb = content_hashes(read_only(a), chunk=3), content_hashes(read_only(b))
    i, j = exact_groups(ha)
    assert list(zip(i.tolist(), j.tolist())) == [(2, 7), (2, 9), (7, 9)]
    i, j = exact_groups(ha, hb)
    assert list(zip(i.tolist(), j.tolist())) == [(2, 0), (3, 1), (7, 0), (9, 0)]


def test_same_bytes_in_another_shape_is_no_duplicate() -> None:
    pixels = np.arange(24, dtype=np.uint8)
    i, _ = exact_groups(content_hashes(pixels.reshape(1, 1, 4, 6)), content_hashes(pixels.reshape(1, 1, 6, 4)))
    assert i.size == 0


def test_phash_survives_reencoding_and_separates_unrelated_images() -> None:
    rng = np.random.default_rng(1)
    images = blobs(rng, 12)
    copies = np.stack([reencoded(image) for image in images])
    brighter = np.clip(images.astype(np.int16) + 8, 0, 255).astype(np.uint8)
    h, h_copies, h_brighter = (perceptual_hashes(read_only(x), chunk=5) for x in (images, copies, brighter))
    assert h.dtype == np.uint64
    assert np.diag(hamming(h, h_copies)).max() <= 6
    assert np.diag(hamming(h, h_brighter)).max() <= 6
    unrelated = hamming(h, h)[np.triu_indices(len(h), k=1)]
    assert unrelated.min() > 16


def test_phash_does_not_depend_on_the_chunk() -> None:
    images = blobs(np.random.default_rng(2), 9, size=28, channels=1)
    assert np.array_equal(perceptual_hashes(images, chunk=2), perceptual_hashes(images))


def test_hash_pairs_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 2**64, 500, dtype=np.uint64)
    hashes[250:300] = hashes[:50] ^ (np.uint64(1) << rng.integers(0, 64, 50).astype(np.uint64))  # near copies
    distances = hamming(hashes, hashes)
    i, j, d = hash_pairs(hashes, max_distance=22, block=64)
    want_i, want_j = np.nonzero(np.triu(distances <= 22, k=1))
    assert len(i) > 50
    assert np.array_equal(i, want_i) and np.array_equal(j, want_j)
    assert np.array_equal(d, distances[i, j])
    query, reference = hashes[:300], hashes[300:]
    i, j, d = hash_pairs(query, reference, max_distance=22, block=64)
    want_i, want_j = np.nonzero(distances[:300, 300:] <= 22)
    assert np.array_equal(i, want_i) and np.array_equal(j, want_j)
    assert np.array_equal(d, distances[:300, 300:][i, j])


def brute_nearest(query: np.ndarray, reference: np.ndarray, k: int, exclude_self: bool):
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    r = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    distances = np.sqrt(np.maximum(2 - 2 * q @ r.T, 0))
    if exclude_self:
        np.fill_diagonal(distances, np.inf)
    order = np.argsort(distances, axis=1)[:, :k]
    return np.take_along_axis(distances, order, axis=1), order


def test_nearest_matches_brute_force_within_and_across() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 16)) * rng.uniform(0.1, 10, (300, 1))  # the scale of a row must not matter
    y = rng.normal(size=(130, 16))
    distances, indices = nearest(x, k=3, block=64)
    want_d, want_i = brute_nearest(x, x, 3, exclude_self=True)
    assert distances.dtype == np.float32 and indices.dtype == np.int64
    assert np.array_equal(indices, want_i)
    assert np.allclose(distances, want_d, atol=1e-3)
    copies = x.copy()
    copies[17] = 3 * copies[5]  # the same direction: each other's neighbour at distance 0, never themselves
    distances, indices = nearest(copies, k=1, block=64)
    assert indices[5, 0] == 17 and indices[17, 0] == 5
    assert distances[5, 0] < 1e-3 and distances[17, 0] < 1e-3
    distances, indices = nearest(y, x, k=3, block=50)
    want_d, want_i = brute_nearest(y, x, 3, exclude_self=False)
    assert np.array_equal(indices, want_i)
    assert np.allclose(distances, want_d, atol=1e-3)
    with pytest.raises(ValueError, match="k=4"):
        nearest(x[:4], k=4)


def test_relative_threshold_scales_with_the_data() -> None:
    distances = np.array([[1.0, 5.0], [2.0, 5.0], [4.0, 5.0]])
    assert relative_threshold(distances, 0.5) == pytest.approx(1.0)
    assert relative_threshold(10 * distances[:, 0], 0.5) == pytest.approx(10.0)


def box_blurred(image: np.ndarray) -> np.ndarray:
    """Five passes of a 3x3 box filter."""
    x = torch.from_numpy(image[None].astype(np.float32))
    box = torch.full((3, 1, 3, 3), 1 / 9)
    for _ in range(5):
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), box, groups=3)
    return x[0].round().to(torch.uint8).numpy()


def test_quality_flags_blank_dark_bright_blurry_and_grayscale_images() -> None:
    rng = np.random.default_rng(5)
    images = noise(rng, 12)
    images[0] = 128
    images[1] = noise(rng, 1, 0, 30)[0]
    images[2] = noise(rng, 1, 240, 256)[0]
    images[3] = box_blurred(images[4])
    images[5] = images[5, :1]
    stats = image_stats(read_only(images), chunk=5)
    assert stats["grayscale"].tolist() == [i in (0, 5) for i in range(12)]
    issues = quality_issues(stats)
    assert [(i, kind) for i, kind, _ in issues] == [(0, "blank"), (1, "dark"), (2, "bright"), (3, "blurry"),
                                                    (5, "grayscale")]
    assert issues[3][2] < 0.05  # the blur ratio to the set's median


def test_an_all_gray_set_flags_no_grayscale_image() -> None:
    rng = np.random.default_rng(6)
    gray = noise(rng, 6, channels=1)
    assert not any(kind == "grayscale" for _, kind, _ in quality_issues(image_stats(np.repeat(gray, 3, axis=1))))
    assert not image_stats(gray)["grayscale"].any()
    mixed = np.concatenate([np.repeat(gray[:3], 3, axis=1), noise(rng, 3)])  # half: at the default 0.5, flagged
    assert [i for i, kind, _ in quality_issues(image_stats(mixed)) if kind == "grayscale"] == [0, 1, 2]
    settings = QualitySettings(max_grayscale_fraction=0.4)
    assert not any(kind == "grayscale" for _, kind, _ in quality_issues(image_stats(mixed), settings=settings))


def test_tiny_and_elongated_files_are_flagged_from_their_headers(tmp_path) -> None:
    sizes = [(64, 64), (10, 12), (100, 20), (20, 80), (17, 16)]
    paths = []
    for n, (w, h) in enumerate(sizes):
        paths.append(tmp_path / f"{n}.png")
        Image.new("RGB", (w, h), (200, 30, 90)).save(paths[-1])
    paths.append(tmp_path / "broken.png")
    paths[-1].write_bytes(b"not an image")
    files = file_stats(paths)
    assert files["width"].tolist() == [64, 10, 100, 20, 17, 0]
    assert files["height"].tolist() == [64, 12, 20, 80, 16, 0]
    stats = image_stats(noise(np.random.default_rng(7), 6))
    issues = quality_issues(stats, files)
    assert issues == [(1, "tiny", 10.0), (2, "aspect", 5.0)]
    assert quality_issues(stats, files, QualitySettings(min_side=20, max_aspect=3.5)) == [
        (1, "tiny", 10.0), (2, "aspect", 5.0), (3, "aspect", 4.0), (4, "tiny", 16.0)]


def test_quality_settings_from_mapping_checks_keys_and_values() -> None:
    assert QualitySettings.from_mapping({"min_side": 8, "blur_factor": 0.1}).min_side == 8
    with pytest.raises(ConfigError, match=r"audit\.quality\.nope"):
        QualitySettings.from_mapping({"nope": 1})
    for key in ("min_contrast", "min_brightness", "blur_factor", "min_side", "max_aspect", "max_grayscale_fraction"):
        with pytest.raises(ConfigError, match=rf"audit\.quality\.{key}"):
            QualitySettings.from_mapping({key: -1})
    with pytest.raises(ConfigError, match=r"audit\.quality\.max_aspect"):
        QualitySettings.from_mapping({"max_aspect": 0.5})


def test_thumbnails_keep_a_retoned_copy_closer_than_any_other_image():
    from lit_vision.auditing.hashing import thumbnail_features

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (50, 3, 32, 32), dtype=np.uint8)
    copy = np.clip(images[7].astype(np.float64) * 0.8 + 30, 0, 255).astype(np.uint8)[None]  # contrast + brightness
    feats, query = thumbnail_features(images), thumbnail_features(copy)
    assert feats.shape == (50, 3 * 8 * 8)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    assert int(np.argmin(np.linalg.norm(feats - query, axis=1))) == 7


def test_a_white_digit_on_black_is_not_a_dark_image_but_a_dim_frame_is():
    from lit_vision.auditing.quality import QualitySettings, image_stats, quality_issues

    digit = np.zeros((1, 1, 28, 28), np.uint8)
    digit[0, 0, 6:22, 12:15] = 255  # a "1": mean ~17, std ~60
    dim = np.full((1, 1, 28, 28), 8, np.uint8)
    dim[0, 0, ::4, ::4] = 30  # a nearly black frame with faint content
    stats = image_stats(np.concatenate([digit, dim]))
    assert stats["brightness"][0] < 20
    assert [(i, kind) for i, kind, _ in quality_issues(stats, None, QualitySettings())] == [(1, "dark")]
