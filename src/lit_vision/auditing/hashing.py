"""Image hashes for duplicate search: exact digests of the pixels and 64-bit DCT perceptual hashes (pHash).

Images are uint8 arrays ``(N, C, H, W)`` with C in {1, 3}, possibly read-only memmaps: everything reads them a
chunk at a time (:func:`chunk_slices`), so memory stays bounded for any number of images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

#: at most this many bytes of float32 pixels per chunk: a set of large images is read fewer images at a time
CHUNK_BYTES = 256 * 2**20
#: ITU-R BT.601 luma weights of R, G and B
LUMA = (0.299, 0.587, 0.114)
#: pHash: the grayscale image is resized to DCT_SIZE x DCT_SIZE and its HASH_SIZE x HASH_SIZE lowest frequencies kept
DCT_SIZE = 32
HASH_SIZE = 8
#: a coefficient must exceed the median by this much (luma units) to set its bit, so that rounding noise on a flat
#: image cannot set bits at random
_TIE_TOLERANCE = 1e-2


def check_images(images: np.ndarray) -> None:
    """Refuse anything but a uint8 ``(N, C, H, W)`` array with 1 or 3 channels."""
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (N, C, H, W) with C in {{1, 3}}, got {images.dtype} {images.shape}")


def chunk_slices(images: np.ndarray, chunk: int = 4096) -> Iterator[slice]:
    """Slices of at most ``chunk`` images, fewer when the images are large (a chunk's float32 copy stays within
    :data:`CHUNK_BYTES`)."""
    per_image = 4 * int(np.prod(images.shape[1:]))
    rows = max(1, min(chunk, CHUNK_BYTES // max(per_image, 1)))
    for start in range(0, len(images), rows):
        yield slice(start, min(start + rows, len(images)))


def luma(images: np.ndarray) -> torch.Tensor:
    """The float32 luma ``(n, 1, H, W)`` (0..255) of a chunk of uint8 images; 1-channel images are their own luma."""
    x = torch.from_numpy(np.array(images)).to(torch.float32)  # a copy: memmaps may be read-only
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def content_hashes(images: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """A 16-byte BLAKE2b digest (``S16``) of each image's decoded pixels, for exact duplicates. The image shape is
    hashed too, so images of different shapes (two sets compared) never collide."""
    check_images(images)
    digests = np.empty(len(images), dtype="S16")
    shape = repr(tuple(images.shape[1:])).encode()
    for part in chunk_slices(images, chunk):
        block = np.ascontiguousarray(images[part])
        for i, image in enumerate(block, start=part.start):
            digest = hashlib.blake2b(shape, digest_size=16)
            digest.update(image)
            digests[i] = digest.digest()
    return digests


def exact_groups(hashes_a: np.ndarray, hashes_b: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``(i, j)`` of equal hashes, sorted: within ``hashes_a`` (``i < j``) when ``hashes_b`` is None,
    else ``hashes_a[i] == hashes_b[j]`` across the two sets. A group of m equal images gives all m(m-1)/2 pairs."""
    a = np.asarray(hashes_a)
    b = a if hashes_b is None else np.asarray(hashes_b)
    order = np.argsort(b, kind="stable")
    sorted_b = b[order]
    lo = np.searchsorted(sorted_b, a, side="left")
    counts = np.searchsorted(sorted_b, a, side="right") - lo
    i = np.repeat(np.arange(len(a), dtype=np.int64), counts)
    within_run = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    j = order[np.repeat(lo, counts) + within_run].astype(np.int64)
    if hashes_b is None:
        keep = i < j
        i, j = i[keep], j[keep]
    ranked = np.lexsort((j, i))
    return i[ranked], j[ranked]


def _dct_rows() -> torch.Tensor:
    """The first HASH_SIZE rows of the orthonormal DCT-II matrix of size DCT_SIZE: ``D @ X @ D.T`` are the
    lowest frequencies of ``X``."""
    k = np.arange(HASH_SIZE)[:, None]
    x = np.arange(DCT_SIZE)[None, :]
    rows = np.sqrt(2.0 / DCT_SIZE) * np.cos(np.pi * (2 * x + 1) * k / (2 * DCT_SIZE))
    rows[0] /= np.sqrt(2.0)
    return torch.from_numpy(rows.astype(np.float32))


def perceptual_hashes(images: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """The 64-bit DCT perceptual hash (uint64) of each image, robust to re-encoding, resizing and small brightness
    changes: luma, resized to 32x32 (bilinear, antialiased), 2-D DCT-II, the top-left 8x8 coefficients; a bit is
    set where a coefficient exceeds the median of the 63 non-DC coefficients. The DC term (the mean brightness)
    is left out of the median because it dwarfs the others; its own bit is kept, set for any non-black image."""
    check_images(images)
    dct = _dct_rows()
    hashes = np.empty(len(images), dtype=np.uint64)
    for part in chunk_slices(images, chunk):
        small = F.interpolate(luma(images[part]), size=(DCT_SIZE, DCT_SIZE), mode="bilinear",
                              align_corners=False, antialias=True)[:, 0]
        low = (dct @ small @ dct.T).reshape(len(small), HASH_SIZE * HASH_SIZE)
        median = low[:, 1:].median(dim=1, keepdim=True).values
        bits = (low > median + _TIE_TOLERANCE).numpy()
        hashes[part] = np.packbits(bits, axis=1, bitorder="little").view("<u8")[:, 0]
    return hashes


def _signs(hashes: np.ndarray) -> torch.Tensor:
    """The 64 bits of each hash as a ±1 float32 row: the dot product of two rows is 64 - 2 x their Hamming
    distance, so a matmul gives a whole block of distances at once."""
    packed = np.ascontiguousarray(hashes, dtype=np.uint64).view(np.uint8).reshape(-1, 8)
    bits = np.unpackbits(packed, axis=1).astype(np.float32)
    return torch.from_numpy(bits * 2 - 1)


def hash_pairs(query: np.ndarray, reference: np.ndarray | None = None, *, max_distance: int,
               block: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``(i, j, distance)`` of 64-bit hashes within Hamming ``max_distance``, sorted by ``(i, j)``:
    ``query[i]`` against ``reference[j]``, or within ``query`` (``i < j`` only) when ``reference`` is None.
    Compared a ``block x block`` tile at a time, so memory is O(block²) besides the pairs found."""
    if max_distance < 0:
        raise ValueError(f"max_distance={max_distance} must be >= 0")
    within = reference is None
    q = _signs(query)
    r = q if within else _signs(reference)
    min_dot = 64 - 2 * max_distance
    found: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for qs in range(0, len(q), block):
        q_block = q[qs:qs + block]
        for rs in range(qs if within else 0, len(r), block):
            dots = q_block @ r[rs:rs + block].T
            hits = dots >= min_dot
            if within and rs == qs:
                hits = hits.triu(diagonal=1)  # the diagonal tile: j > i only
            ii, jj = hits.nonzero(as_tuple=True)
            found.append((ii + qs, jj + rs, dots[ii, jj]))
    if not found:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    i, j, dots = (torch.cat(column).numpy() for column in zip(*found))
    distance = ((64 - dots) / 2).round().astype(np.int64)
    ranked = np.lexsort((j, i))
    return i[ranked].astype(np.int64), j[ranked].astype(np.int64), distance[ranked]


#: the side of the thumbnail :func:`thumbnail_features` compares images by
THUMBNAIL = 8


def thumbnail_features(images: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    """Each image as a ``size`` x ``size`` area-averaged thumbnail (every channel), centred and L2-normalised:
    ``(n, C * size * size)`` float32. Two copies of one shot stay close through re-encoding, resizing, a brightness
    or contrast change and small shifts, whatever a net learned; the audit puts these beside the net's embedding
    for its near-duplicate search."""
    x = torch.nn.functional.interpolate(torch.from_numpy(np.array(images)).to(torch.float32), size=(size, size),
                                        mode="area").flatten(1)
    x = x - x.mean(dim=1, keepdim=True)
    return (x / x.norm(dim=1, keepdim=True).clamp_min(1e-6)).numpy()
