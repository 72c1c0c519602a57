"""``data.exclude``: images left out of training, evaluation and prepare, by file path or ``<split>/<index>``.

Each row's identity (``ImageArrays.ids``: its index in its source split) survives label mapping, balancing and the val
split; the three list formats (an audit's issues.csv, a text file, a config list) are read; every way a list can be
wrong is one error naming the file (and line) or the entry; a composed config leaves exactly the listed images out
of an image folder and of an array source; data=shards refuses the key and prepare leaves the files out instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config
from hydra.utils import instantiate

from lit_vision.commands import prepare as prepare_command
from lit_vision.commands.runner import EXIT_CONFIG, EXIT_OTHER, execute
from lit_vision.config import validate_config
from lit_vision.data import ImageArrays, SourceSplits, load_source
from lit_vision.data.datamodule import VisionDataModule
from lit_vision.data.exclude import apply_exclude, exclude_entries, normalise, read_exclude
from lit_vision.data.items import item_name, item_names
from lit_vision.data.mapping import LabelMapping, apply_mapping
from lit_vision.data.shards import SOURCES_FILE, open_shards
from lit_vision.data.synthetic import write_torchvision_idx
from lit_vision.errors import ConfigError, DataNotFoundError
from lit_vision.training.builders import build_datamodule

#: conftest's pets_root: train cat 16, dog 16; test cat 5, dog 5
PETS_TRAIN, PETS_TEST = 32, 10


def arrays(n: int, sources: bool = False) -> ImageArrays:
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1)
    return ImageArrays(images, np.arange(n) % 2, ["a", "b"], [f"/d/{i}.png" for i in range(n)] if sources else [])


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- stable identity -----------------------------------------------------------------------------------------
def test_ids_default_to_the_row_index_and_follow_subset_and_relabelling() -> None:
    a = arrays(6)
    assert a.ids.tolist() == [0, 1, 2, 3, 4, 5]
    sub = a.subset(np.array([4, 1, 3]))
    assert sub.ids.tolist() == [1, 3, 4] and sub.images[:, 0, 0, 0].tolist() == [1, 3, 4]
    assert sub.subset(np.array([2])).ids.tolist() == [4]
    assert sub.with_labels(np.zeros(3, dtype=np.int64), ["x"]).ids.tolist() == [1, 3, 4]
    with pytest.raises(ValueError, match="6 images but 2 ids"):
        ImageArrays(a.images, a.labels, a.class_names, ids=np.arange(2))


def test_item_names_are_paths_for_files_and_split_index_for_arrays() -> None:
    assert item_names(arrays(3, sources=True), "train") == ["/d/0.png", "/d/1.png", "/d/2.png"]
    sub = arrays(5).subset(np.array([1, 4]))
    assert item_names(sub, "test") == ["test/1", "test/4"] and item_name(sub, "test", 1) == "test/4"


def test_digits_splits_are_numbered_within_each_split() -> None:
    splits = load_source("digits")
    assert splits.train.ids.tolist() == list(range(len(splits.train)))
    assert splits.test.ids.tolist() == list(range(len(splits.test)))


def test_ids_survive_mapping_balancing_and_the_val_split() -> None:
    source = load_source("digits").train
    mapping = LabelMapping(classes=["3", "5", "8"], balance=True)
    mapped = apply_mapping(source, mapping, "train", seed=0)
    assert len(mapped) < len(source)
    np.testing.assert_array_equal(mapped.images, source.images[mapped.ids])  # each row is still its source row
    dm = VisionDataModule(source="digits", channels=1, mapping={"positive": "3"}, val_fraction=0.2,
                          eval_batch_size=64, seed=0)  # the seed load_source("digits") splits test with
    dm.setup("fit")
    ids = np.concatenate([dm.train_set.ids, dm.val_set.ids])
    assert sorted(ids.tolist()) == list(range(len(source)))  # train and val: every source row once
    np.testing.assert_array_equal(dm.val_set.images, source.images[dm.val_set.ids])
    assert item_names(dm.val_set, "train")[0] == f"train/{dm.val_set.ids[0]}"


# --- the three formats ---------------------------------------------------------------------------------------
def test_an_audit_issues_csv_is_read_by_split_and_item(tmp_path: Path) -> None:
    csv = write(tmp_path / "issues.csv", "split,item,issue,score\n"
                                         "train,photos/cat/1.jpg,blurry,0.9\n"
                                         "test,test/7,duplicate,1.0\n"
                                         "\n"
                                         "train,photos/cat/1.jpg,dark,0.5\n")
    excluded = read_exclude(str(csv))
    assert [e.text for e in excluded.entries] == ["photos/cat/1.jpg", "test/7", "photos/cat/1.jpg"]
    assert excluded.entries[0].path == normalise("photos/cat/1.jpg") and excluded.entries[0].where == "line 2"
    assert (excluded.entries[1].split, excluded.entries[1].index) == ("test", 7)
    # the same CSV under another name is recognised by its header
    assert read_exclude(str(write(tmp_path / "issues.txt", csv.read_text()))).entries == excluded.entries


def test_a_text_file_skips_blank_lines_and_comments(tmp_path: Path) -> None:
    listing = write(tmp_path / "drop.txt", "# left out by hand\n\n  a/b.JPG  \ntrain/3 # a duplicate\nval/0\n")
    excluded = read_exclude(listing)
    assert [(e.text, e.where) for e in excluded.entries] == [("a/b.JPG", "line 3"), ("train/3", "line 4"),
                                                               ("val/0", "line 5")]


def test_a_config_list_is_read() -> None:
    excluded = read_exclude(["a.jpg", "test/3"])
    assert [(e.path, e.split, e.index) for e in excluded.entries] == [(normalise("a.jpg"), None, None),
                                                                      (None, "test", 3)]
    assert excluded.origin == "data.exclude"


def test_exclude_entries_are_lines_that_read_back_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lines = exclude_entries(["cat/1.jpg", "test/3", "./cat/1.jpg"])
    assert lines == [str(tmp_path / "cat" / "1.jpg"), "test/3"]
    monkeypatch.chdir("/")
    again = read_exclude(str(write(tmp_path / "list.txt", "".join(f"{line}\n" for line in lines))))
    assert [e.key for e in again.entries] == lines


# --- errors --------------------------------------------------------------------------------------------------
def test_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="no such file") as err:
        read_exclude(str(tmp_path / "issues.csv"))
    assert f"data.exclude={tmp_path / 'issues.csv'}" in str(err.value) and "lit-vision audit" in str(err.value)


def test_a_csv_without_split_and_item_names_the_file(tmp_path: Path) -> None:
    csv = write(tmp_path / "issues.csv", "path,issue\na.jpg,blurry\n")
    with pytest.raises(ConfigError, match="lacks the columns 'split' and 'item'") as err:
        read_exclude(str(csv))
    assert str(csv) in str(err.value)


@pytest.mark.parametrize("text, line, named", [
    ("a.jpg\nb.jpg\ncat.jpg,0.93\n", "line 3", "'cat.jpg,0.93' is not an image file's path or <split>/<index>"),
    ("test/3\nvalid/4\n", "line 2", "'valid' is not a split (train, val or test)"),
    ("train/-1\n", "line 1", "is not an image file's path or <split>/<index>"),
])
def test_an_unreadable_line_names_the_file_and_line(tmp_path: Path, text: str, line: str, named: str) -> None:
    listing = write(tmp_path / "drop.txt", text)
    with pytest.raises(ConfigError) as err:
        read_exclude(str(listing))
    assert f"data.exclude={listing} {line}: " in str(err.value) and named in str(err.value)


def test_a_csv_row_with_a_bad_split_names_the_line(tmp_path: Path) -> None:
    csv = write(tmp_path / "issues.csv", "split,item\ntrain,a.jpg\nholdout,b.jpg\n")
    with pytest.raises(ConfigError, match=r"issues.csv line 3: split 'holdout' is not a split"):
        read_exclude(str(csv))


def test_a_bad_config_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"data.exclude\[1\]=3 is not"):
        read_exclude(["a.jpg", 3])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="data.exclude=.*give the issues.csv"):
        read_exclude({"a": 1})  # type: ignore[arg-type]


def test_an_entry_not_in_the_data_is_an_error_naming_it() -> None:
    splits = SourceSplits(train=arrays(4, sources=True), test=arrays(3))
    with pytest.raises(ConfigError) as err:
        apply_exclude(splits, read_exclude(["/d/1.png", "/d/9.png", "test/2", "test/3", "val/0"]))
    msg = str(err.value)
    assert msg.startswith("data.exclude: 3 of its 5 entries are not in the data: /d/9.png (entry 1), "
                          "test/3 (entry 3), val/0 (entry 4);")
    assert "check data.root or regenerate the list with lit-vision audit" in msg


def test_leaving_a_split_empty_is_an_error() -> None:
    splits = SourceSplits(train=arrays(4), test=arrays(2))
    with pytest.raises(ConfigError, match="leaves no image in the test split"):
        apply_exclude(splits, read_exclude(["test/0", "test/1"]))


def test_apply_exclude_drops_paths_from_any_split_and_indices_from_theirs() -> None:
    splits = SourceSplits(train=arrays(5, sources=True), test=arrays(4))
    out, counts = apply_exclude(splits, read_exclude(["/d/1.png", "/d/./3.png", "test/0", "test/0"]))
    assert counts == {"train": 2, "test": 1}
    assert out.train.sources == ["/d/0.png", "/d/2.png", "/d/4.png"] and out.train.ids.tolist() == [0, 2, 4]
    assert out.test.ids.tolist() == [1, 2, 3]


# --- wired into the data module, prepare and data=shards ----------------------------------------------------
def test_a_train_config_leaves_the_listed_images_out(pets_root: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    dropped = [pets_root / "train" / "cat" / "0001.png", pets_root / "train" / "dog" / "0004.png",
               pets_root / "test" / "dog" / "0000.png"]
    csv = write(tmp_path / "issues.csv", "split,item,issue\n" + "".join(
        f"{p.parent.parent.name},{p},blurry\n" for p in dropped))
    cfg = compose_config(["data=image_folder", f"data.root={pets_root}", f"data.exclude={csv}", "data.val_fraction=0.2",
                          "accelerator=cpu"], tmp_path / "run")
    validate_config(cfg)  # the key is a data setting, and the file is read and checked
    with caplog.at_level(logging.INFO, logger="lit_vision.data.datamodule"):
        dm = build_datamodule(cfg)
    assert "data.exclude: left out {'train': 2, 'test': 1}" in caplog.text
    assert len(dm.train_set) + len(dm.val_set) == PETS_TRAIN - 2 and len(dm.test_set) == PETS_TEST - 1
    kept = {normalise(s) for split in (dm.train_set, dm.val_set, dm.test_set) for s in split.sources}
    assert len(kept) == PETS_TRAIN + PETS_TEST - 3 and not kept & {normalise(p) for p in dropped}


def test_source_splits_are_mapped_without_the_val_split_and_the_excluded_rows(tmp_path: Path) -> None:
    dm = VisionDataModule(source="digits", channels=1, mapping={"positive": "3"}, eval_batch_size=64, seed=0,
                          exclude=["train/0", "test/5"])
    splits = dm.source_splits()
    assert sorted(splits) == ["test", "train"] and dm.train_set is None
    source = load_source("digits")
    assert len(splits["train"]) == len(source.train) - 1 and splits["train"].ids[0] == 1
    assert 5 not in splits["test"].ids and splits["test"].class_names == ["not_3", "3"]


def test_a_missing_list_fails_the_config_check_before_any_data_is_read(tmp_path: Path) -> None:
    cfg = compose_config(["data=image_folder", f"data.root={tmp_path / 'nowhere'}",
                          f"data.exclude={tmp_path / 'issues.csv'}"], tmp_path / "run")
    with pytest.raises(DataNotFoundError, match="issues.csv: no such file"):
        validate_config(cfg)


def test_split_index_entries_leave_rows_of_an_array_source_out(tmp_path: Path) -> None:
    written = write_torchvision_idx(tmp_path / "idx", "MNIST", n_train=40, n_test=20)
    cfg = compose_config(["data=mnist", f"data.root={tmp_path / 'idx'}", "data.exclude=[train/0,train/39,test/7]",
                          "accelerator=cpu"], tmp_path / "run")
    validate_config(cfg)
    dm = build_datamodule(cfg)
    train_ids = np.concatenate([dm.train_set.ids, dm.val_set.ids])
    assert sorted(train_ids.tolist()) == list(range(1, 39))
    assert dm.test_set.ids.tolist() == [i for i in range(20) if i != 7]
    np.testing.assert_array_equal(dm.test_set.images[:, 0], written["test"][0][dm.test_set.ids])


def test_data_shards_refuses_exclude_pointing_at_prepare(tmp_path: Path) -> None:
    cfg = compose_config(["data=shards", f"data.root={tmp_path}", "data.image_size=16", "data.exclude=[test/3]"],
                         tmp_path / "run")
    with pytest.raises(ConfigError, match="data.exclude=.*python -m lit_vision.prepare"):
        validate_config(cfg)
    with pytest.raises(ConfigError, match="Pass data.exclude to python -m lit_vision.prepare"):
        instantiate(cfg.data).setup()


def prepare(run_dir: Path, *overrides: str) -> None:
    cfg = compose_config(["data=image_folder", "short_side=8", "workers=1", *overrides], run_dir, "prepare")
    execute(prepare_command.run, cfg, prepare_command.check)


def test_prepare_leaves_the_listed_files_out(pets_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dropped = [pets_root / "train" / "cat" / "0002.png", pets_root / "test" / "cat" / "0001.png"]
    listing = write(tmp_path / "drop.txt", "# bad photos\n" + "".join(f"{p}\n" for p in dropped))
    out = tmp_path / "shards"
    with caplog.at_level(logging.INFO, logger="lit_vision.data.preparation"):
        prepare(tmp_path / "run", f"data.root={pets_root}", f"out={out}", f"data.exclude={listing}")
    assert "data.exclude: left out {'train': 1, 'test': 1}" in caplog.text
    shards = open_shards(out)
    assert shards.count("train") + shards.count("val") == PETS_TRAIN - 1 and shards.count("test") == PETS_TEST - 1
    stored = {normalise(line) for split in ("train", "val", "test")
              for line in (out / split / SOURCES_FILE).read_text().splitlines()}
    assert len(stored) == PETS_TRAIN + PETS_TEST - 2 and not stored & {normalise(p) for p in dropped}
    # another list into the same shard dir is another preparation: refused, never silently reused
    caplog.clear()
    with pytest.raises(SystemExit) as exc:
        prepare(tmp_path / "run2", f"data.root={pets_root}", f"out={out}", f"data.exclude=[{dropped[0]}]")
    assert exc.value.code == EXIT_OTHER and "exclude: " in caplog.text and "choose a new out=" in caplog.text


def test_prepare_refuses_an_entry_not_in_the_folders(pets_root: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    missing = pets_root / "train" / "cat" / "9999.png"
    with pytest.raises(SystemExit) as exc:
        prepare(tmp_path / "run", f"data.root={pets_root}", f"out={tmp_path / 'shards'}", f"data.exclude=[{missing}]")
    assert exc.value.code == EXIT_CONFIG and not (tmp_path / "shards").exists()
    assert f"{missing} (entry 0)" in caplog.text and "not in the data" in caplog.text
