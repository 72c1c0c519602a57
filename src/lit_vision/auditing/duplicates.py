"""Duplicates within and across splits: identical pixels, perceptual-hash neighbours and embedding neighbours.

Three detectors, each catching what the one before misses:

* identical decoded pixels (a content hash), no model;
* a 64-bit DCT perceptual hash within ``hash_distance`` bits, confirmed by 8x8 thumbnails closer than
  ``thumbnail_factor`` x their median nearest-neighbour distance (:func:`confirm_hash_pairs`): re-encoded, resized,
  slightly re-toned copies, no model;
* nearest neighbours in a trained net's instance features (:mod:`lit_vision.auditing.features`), closer than
  ``near_factor`` x the median nearest-neighbour distance of the same split pair: shifted, cropped and
  colour-changed copies. The threshold is relative to the data's own distances because learned features have no
  fixed scale (ciFAIR ranked pairs the same way, by distance in a CNN's normalised feature space, then judged them
  by hand).

A pair is reported once, as the copy to drop: the image in the later split (train < val < test) or, inside a
split, the later row; its ``partner`` is the copy that stays. A pair found by several detectors is one finding
whose ``detail`` names them all; its kind is ``exact_duplicate`` when the pixels are identical.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from lit_vision.auditing.findings import EXACT, NEAR, SPLIT_ORDER, Finding
from lit_vision.auditing.hashing import exact_groups, hash_pairs
from lit_vision.auditing.neighbours import nearest

#: hash bits of the perceptual hash
HASH_BITS = 64


@dataclass
class SplitHashes:
    """A split's item names and its two hashes (content digests and perceptual hashes)."""

    items: Sequence[str]
    content: np.ndarray
    perceptual: np.ndarray


@dataclass
class _Pair:
    methods: list[str] = field(default_factory=list)
    exact: bool = False
    hamming: int | None = None
    relative: float | None = None
    thumbnail: float | None = None


PairKey = tuple[str, int, str, int]  # (item split, item row, partner split, partner row)


def split_pairs(splits: Sequence[str]) -> list[tuple[str, str]]:
    """(reference, query) split pairs: each split against itself and against every earlier split."""
    ordered = sorted(splits, key=SPLIT_ORDER.index)
    return [(ordered[a], ordered[b]) for b in range(len(ordered)) for a in range(b + 1)]


def _key(reference: str, query: str, ref_row: int, query_row: int) -> PairKey:
    """The pair as (copy to drop, copy kept): the query split's row across splits, the later row inside one."""
    if reference == query and ref_row > query_row:
        ref_row, query_row = query_row, ref_row
    return query, int(query_row), reference, int(ref_row)


def find_hash_pairs(hashes: Mapping[str, SplitHashes], hash_distance: int) -> dict[PairKey, _Pair]:
    """Identical pixels and perceptual-hash neighbours for every (reference, query) split pair."""
    pairs: dict[PairKey, _Pair] = {}
    for reference, query in split_pairs(list(hashes)):
        same = reference == query
        q, r = hashes[query], hashes[reference]
        i, j = exact_groups(q.content, None if same else r.content)
        for a, b in zip(i, j):
            pair = pairs.setdefault(_key(reference, query, b, a), _Pair())
            pair.exact = True
            pair.methods.append("pixels")
        i, j, dist = hash_pairs(q.perceptual, None if same else r.perceptual, max_distance=hash_distance)
        for a, b, d in zip(i, j, dist):
            pair = pairs.setdefault(_key(reference, query, b, a), _Pair())
            pair.hamming = int(d)
            pair.methods.append(f"phash {int(d)}/{HASH_BITS}")
    return pairs


def confirm_hash_pairs(pairs: dict[PairKey, _Pair], thumbnails: Mapping[str, np.ndarray], thumbnail_factor: float,
                       device: str = "cpu") -> None:
    """Keep a perceptual-hash pair only when its thumbnails are also closer than ``thumbnail_factor`` x the median
    nearest-neighbour thumbnail distance of its split pair. On sets of simple, similar images (digits, clothes on a
    plain ground) many different images share a hash within a few bits; copies of one shot stay close in pixels too.
    Identical pixels need no confirmation."""
    medians = {key: float(np.median(dist)) for key, (dist, _) in nearest_distances(thumbnails, device).items()}
    for key in list(pairs):
        query, q_row, reference, r_row = key
        pair = pairs[key]
        pair.thumbnail = float(np.linalg.norm(thumbnails[query][q_row] - thumbnails[reference][r_row]))
        pair.thumbnail /= max(medians[(reference, query)], 1e-12)
        if not pair.exact and pair.thumbnail >= thumbnail_factor:
            del pairs[key]
        else:
            pair.methods.append(f"thumbnail {pair.thumbnail:.3f}")


def nearest_distances(embeddings: Mapping[str, np.ndarray], device: str = "cpu"
                      ) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """``{(reference, query): (distance, index)}``: each query image's nearest neighbour in the reference split
    (never itself), for every split pair."""
    out = {}
    for reference, query in split_pairs(list(embeddings)):
        same = reference == query
        dist, idx = nearest(embeddings[query], None if same else embeddings[reference], k=1, device=device)
        out[(reference, query)] = (dist[:, 0], idx[:, 0])
    return out


def add_embedding_pairs(pairs: dict[PairKey, _Pair], neighbours: Mapping[tuple[str, str], tuple[np.ndarray,
                        np.ndarray]], embeddings: Mapping[str, np.ndarray], near_factor: float) -> None:
    """Add the embedding neighbours closer than ``near_factor`` x their split pair's median distance, and give every
    pair found by hashing its relative embedding distance too (one scale for the scores)."""
    medians = {key: float(np.median(dist)) for key, (dist, _) in neighbours.items()}
    for (reference, query), (dist, idx) in neighbours.items():
        relative = dist / max(medians[(reference, query)], 1e-12)
        for row in np.flatnonzero(relative < near_factor):
            pair = pairs.setdefault(_key(reference, query, idx[row], row), _Pair())
            pair.methods.append(f"embedding {relative[row]:.3f}")
    unit = {split: _normalised(e) for split, e in embeddings.items()}
    for (query, q_row, reference, r_row), pair in pairs.items():
        d = float(np.linalg.norm(unit[query][q_row] - unit[reference][r_row]))
        pair.relative = d / max(medians[(reference, query)], 1e-12)


def _normalised(e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, dtype=np.float32)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def to_findings(pairs: Mapping[PairKey, _Pair], items: Mapping[str, Sequence[str]]) -> list[Finding]:
    """One finding per image to drop (its closest partner when it has several)."""
    best: dict[tuple[str, int], Finding] = {}
    for (query, q_row, reference, r_row), pair in pairs.items():
        score = (0.0 if pair.exact else pair.relative if pair.relative is not None
                 else pair.thumbnail if pair.thumbnail is not None else (pair.hamming or 0) / HASH_BITS)
        finding = Finding(split=query, item=items[query][q_row], kind=EXACT if pair.exact else NEAR, score=score,
                          partner_split=reference, partner=items[reference][r_row],
                          detail=", ".join(dict.fromkeys(pair.methods)), index=q_row, partner_index=r_row)
        old = best.get((query, q_row))
        if old is None or (finding.kind == EXACT, -finding.score) > (old.kind == EXACT, -old.score):
            best[(query, q_row)] = finding
    return list(best.values())
