"""Label mapping with any source: one-vs-rest, subset + relabel, seeded balancing, class weights."""

from __future__ import annotations

import numpy as np
import pytest

from lit_vision.data.arrays import ImageArrays
from lit_vision.data.mapping import LabelMapping, apply_mapping, class_weights, one_vs_rest, select_classes, undersample
from lit_vision.data.split import stratified_split
from lit_vision.data.synthetic import FER_CLASSES
from lit_vision.errors import ConfigError
from lit_vision.training.builders import build_classifier, build_datamodule

NAMES = ["cat", "dog", "horse"]


def arrays_from_counts(counts: dict[str, int], names=NAMES) -> ImageArrays:
    """Tiny 1x1 images; the pixel value is the row number (mod 256) so subsets can be traced."""
    labels = np.concatenate([np.full(n, names.index(c)) for c, n in counts.items()]).astype(np.int64)
    images = (np.arange(len(labels)) % 256).astype(np.uint8).reshape(-1, 1, 1, 1)
    return ImageArrays(images, labels, list(names))


def test_one_vs_rest_by_name_and_by_several_names():
    labels = np.array([0, 1, 2, 2, 1])
    binary, names = one_vs_rest(labels, NAMES, "horse", "not_horse")
    assert binary.tolist() == [0, 0, 1, 1, 0] and names == ["not_horse", "horse"]
    binary, names = one_vs_rest(labels, NAMES, ["dog", "horse"])
    assert binary.tolist() == [0, 1, 1, 1, 1] and names == ["not_dog+horse", "dog+horse"]


@pytest.mark.parametrize("call", [lambda: one_vs_rest(np.array([0]), NAMES, "zebra"),
                                  lambda: select_classes(np.array([0]), NAMES, {"zebra": 0, "cat": 1})])
def test_wrong_class_name_names_it_and_lists_the_available_ones(call):
    with pytest.raises(ConfigError) as err:
        call()
    msg = str(err.value)
    assert "zebra" in msg and all(name in msg for name in NAMES) and "data.mapping." in msg


def test_select_classes_keeps_a_subset_and_relabels():
    labels = np.array([0, 1, 2, 2, 1, 0])
    keep, new, names = select_classes(labels, NAMES, {"horse": 0, "cat": 1})
    assert keep.tolist() == [0, 2, 3, 5] and new.tolist() == [1, 0, 0, 1] and names == ["horse", "cat"]
    keep, new, names = select_classes(labels, NAMES, ["dog", "cat"])  # a list keeps its order
    assert keep.tolist() == [0, 1, 4, 5] and new.tolist() == [1, 0, 0, 1] and names == ["dog", "cat"]


def test_select_classes_can_merge_classes_and_checks_new_labels():
    keep, new, names = select_classes(np.array([0, 1, 2]), NAMES, {"cat": 0, "dog": 0, "horse": 1})
    assert new.tolist() == [0, 0, 1] and names == ["cat+dog", "horse"]
    with pytest.raises(ConfigError, match="0..K-1"):
        select_classes(np.array([0, 1]), NAMES, {"cat": 0, "dog": 2})


def test_undersample_balances_to_the_smallest_class_seeded():
    labels = np.array([0] * 50 + [1] * 20 + [2] * 35)
    a, b, c = undersample(labels, 1), undersample(labels, 1), undersample(labels, 2)
    assert np.bincount(labels[a]).tolist() == [20, 20, 20]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.flatnonzero(labels == 1)) <= set(a)  # the smallest class is kept whole
    assert np.all(np.diff(a) > 0)


def test_undersample_per_class_cap_and_its_error():
    labels = np.array([0] * 50 + [1] * 20)
    assert np.bincount(labels[undersample(labels, 0, per_class=7)]).tolist() == [7, 7]
    with pytest.raises(ConfigError, match="per_class=21"):
        undersample(labels, 0, per_class=21)


def test_class_weights_are_inverse_frequency_with_mean_one():
    weights = class_weights(np.array([0] * 30 + [1] * 10), 2)
    assert weights == pytest.approx([40 / 60, 40 / 20])
    assert class_weights(np.array([0, 1, 2]), 3) == pytest.approx([1, 1, 1])


def test_apply_mapping_balances_train_and_test_but_not_val():
    arrays = arrays_from_counts({"cat": 30, "dog": 10, "horse": 5})
    mapping = LabelMapping(positive="horse", balance=True)
    for split in ("train", "test"):
        out = apply_mapping(arrays, mapping, split, seed=0)
        assert out.class_counts() == {"not_horse": 5, "horse": 5}
    assert apply_mapping(arrays, mapping, "val", seed=0).class_counts() == {"not_horse": 40, "horse": 5}


def test_per_class_caps_only_apply_with_balance():
    arrays = arrays_from_counts({"cat": 30, "dog": 10, "horse": 5})
    capped = LabelMapping(classes={"cat": 0, "dog": 1}, balance=True, per_class={"train": 8, "test": 3})
    assert apply_mapping(arrays, capped, "train", 0).class_counts() == {"cat": 8, "dog": 8}
    assert apply_mapping(arrays, capped, "test", 0).class_counts() == {"cat": 3, "dog": 3}
    off = LabelMapping(classes={"cat": 0, "dog": 1}, balance=False, per_class={"train": 8})
    assert apply_mapping(arrays, off, "train", 0).class_counts() == {"cat": 30, "dog": 10}


def test_notebook_004_balancing_arithmetic():
    """FER2013 happy+sad: train 7215/4830 → 2 x 4818, then 80/20 → 7708/1928; test 1774/1247 → 2 x 302."""
    train = arrays_from_counts({"happy": 7215, "sad": 4830}, FER_CLASSES)
    test = arrays_from_counts({"happy": 1774, "sad": 1247}, FER_CLASSES)
    mapping = LabelMapping(classes={"sad": 0, "happy": 1}, balance=True, per_class={"train": 4818, "test": 302})
    assert 4818 == int(0.8 * (7215 + 4830)) // 2 and 302 == (1774 + 1247) // 5 // 2
    train_b = apply_mapping(train, mapping, "train", seed=42)
    assert train_b.class_counts() == {"sad": 4818, "happy": 4818}
    assert apply_mapping(test, mapping, "test", seed=42).class_counts() == {"sad": 302, "happy": 302}
    tr, va = stratified_split(train_b.labels, 0.2, seed=42)
    assert (len(tr), len(va)) == (7708, 1928) and not set(tr) & set(va)
    again = apply_mapping(train, mapping, "train", seed=42)
    np.testing.assert_array_equal(again.images, train_b.images)  # the same rows for the same seed


def test_mapping_works_with_any_source_through_config(make_cfg):
    """digits (a 10-class source) → keep 7 and 3 (in that order), balanced, with names in the model."""
    cfg = make_cfg("data.mapping.classes=['7','3']", "data.mapping.balance=true", "model.loss=bce")
    dm = build_datamodule(cfg)
    assert dm.class_names == ["7", "3"]
    counts = dm.test_set.class_counts()
    assert counts["7"] == counts["3"] > 0
    assert set(dm.train_set.labels.tolist()) == {0, 1}
    model = build_classifier(cfg.model, dm)
    assert model.class_names == dm.class_names and model.net.classifier.out_features == 1


def test_wrong_class_name_in_config_fails_before_training(make_cfg):
    with pytest.raises(ConfigError, match="eleven"):
        build_datamodule(make_cfg("data.mapping.positive=eleven"))


def test_class_weighting_reaches_the_loss(make_cfg):
    cfg = make_cfg("data.mapping.positive='0'", "data.class_weighting=true")
    dm = build_datamodule(cfg)
    model = build_classifier(cfg.model, dm)
    weights = model.class_weight.tolist()
    assert weights[1] > 5 * weights[0]  # one digit vs nine others
