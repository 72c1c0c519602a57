"""``python -m lit_vision.prepare data=image_folder data.root=<photos> out=<shard dir>``: streaming shards.

An image folder of any size (phone photos: JPEG, HEIC, AVIF, PNG …) becomes a shard directory that
``data=shards data.root=<shard dir>`` streams from (:mod:`lit_vision.data.shards`). Examples::

    python -m lit_vision.prepare data=image_folder data.root=~/photos out=~/shards/photos
    python -m lit_vision.prepare data=image_folder data.source_args.train_dirs='[a/train,b/train]' \\
        data.source_args.test_dir=a/test out=shards/ab short_side=320 quality=95 workers=8
    python -m lit_vision.prepare data=image_folder data.root=~/photos data.exclude=audit/issues.csv out=~/shards/photos
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lit_vision.checks import positive_int
from lit_vision.commands.runner import hydra_command
from lit_vision.config import CONF_DIR
from lit_vision.data.exclude import read_exclude
from lit_vision.data.image_folder import split_dirs
from lit_vision.data.preparation import PrepareSettings, auto_workers, prepare_shards
from lit_vision.errors import ConfigError

log = logging.getLogger("lit_vision.prepare")

#: the data keys prepare reads; any other data key must keep its default (it would be silently unused)
USED_DATA_KEYS = {"_target_", "name", "source", "root", "channels", "source_args", "skip_corrupt", "val_fraction",
                  "use_source_val", "seed", "cache_dir", "exclude"}


def check(cfg: DictConfig) -> None:
    """The command's keys, and the refusal of data settings it would not use, before any file is read."""
    if cfg.data.source != "image_folder":
        raise ConfigError(f"prepare reads image folders: data={cfg.data.name} (data.source={cfg.data.source}) is not "
                          "one; use data=image_folder data.root=<the same folder>")
    defaults = OmegaConf.load(Path(CONF_DIR) / "data_defaults.yaml")
    given, default = OmegaConf.to_container(cfg.data, resolve=True), OmegaConf.to_container(defaults)
    for key, value in given.items():  # type: ignore[union-attr]
        if key in USED_DATA_KEYS or key not in default:  # type: ignore[operator]
            continue
        if value != default[key]:  # type: ignore[index]
            raise ConfigError(f"data.{key}={value!r} is not used by prepare (it "
                              f"writes every image at short_side, aspect ratio kept); remove it here and set it when "
                              "training with data=shards")
    positive_int(cfg.short_side, "short_side")
    quality = positive_int(cfg.quality, "quality")
    if quality > 100:
        raise ConfigError(f"quality={quality}: a JPEG quality is 1..100 (90 keeps photos visually lossless)")
    if cfg.workers != "auto":
        positive_int(cfg.workers, "workers")


def run(cfg: DictConfig) -> dict[str, Any]:
    data: dict[str, Any] = OmegaConf.to_container(cfg.data, resolve=True)  # type: ignore[assignment]
    args = dict(data.get("source_args") or {})
    layout = split_dirs(data["root"], args.get("train_dirs"), args.get("val_dir"), args.get("test_dir"))
    settings = PrepareSettings(short_side=int(cfg.short_side), quality=int(cfg.quality),
                               channels=int(data["channels"]), skip_corrupt=bool(data["skip_corrupt"]),
                               val_fraction=float(data["val_fraction"]), use_source_val=bool(data["use_source_val"]),
                               seed=int(data["seed"]))
    command = "python -m lit_vision.prepare " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = Path(str(cfg.out)).expanduser()
    excluded = read_exclude(data["exclude"]) if data.get("exclude") is not None else None
    shards = prepare_shards(layout, out, settings, auto_workers(cfg.workers), command, args.get("class_names"),
                            excluded)
    counts = {split: shards.count(split) for split in shards.splits}
    log.info("shards in %s: %s; classes %s; train mean %s std %s", out, counts, shards.class_names,
             [round(m, 4) for m in shards.manifest["mean"]], [round(s, 4) for s in shards.manifest["std"]])
    log.info("train on them with: python -m lit_vision.train data=shards data.root=%s", out)
    return {"counts": counts}


main = hydra_command("prepare", run, check)

if __name__ == "__main__":
    main()
