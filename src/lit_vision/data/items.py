"""The name of one image of the data, as ``lit-vision audit`` lists it and ``data.exclude`` reads it.

A row of a split read from files (image folders) is named by its file path, as its split's ``sources`` holds it
(``photos/train/cat/001.jpg``); a row of a split read from arrays (digits, MNIST, CIFAR-10 batches) by
``<split>/<index>`` (``train/123``, ``test/7``): its index in that split as the source's loader returned it
(:attr:`ImageArrays.ids <lit_vision.data.arrays.ImageArrays.ids>`, kept through label mapping, balancing and the val
split carved from train). ``split`` is the SOURCE split: rows of a val split carved from train are ``train/<index>``.
"""

from __future__ import annotations

from lit_vision.data.arrays import ImageArrays

#: the splits a source provides (and an item name may start with)
SPLITS = ("train", "val", "test")


def item_name(arrays: ImageArrays, split: str, row: int) -> str:
    """The name of row ``row`` of ``arrays``, a part of source split ``split``."""
    if arrays.sources:
        return arrays.sources[row]
    assert arrays.ids is not None  # set in ImageArrays.__post_init__
    return f"{split}/{int(arrays.ids[row])}"


def item_names(arrays: ImageArrays, split: str) -> list[str]:
    """The name of every row of ``arrays``, a part of source split ``split`` (:func:`item_name`)."""
    if arrays.sources:
        return list(arrays.sources)
    assert arrays.ids is not None
    return [f"{split}/{int(i)}" for i in arrays.ids]


__all__ = ["SPLITS", "item_name", "item_names"]
