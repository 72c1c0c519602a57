"""data=shards under DDP: ranks read disjoint samples with equal batch counts (no rank waits for another at an
epoch's end), and a 2-process DDP run on shards trains and tests every test image once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_ddp import QUIET, cli
from test_shards_training import shard_dir  # noqa: F401  (the module's fixture)

#: run by each of 2 gloo processes: the sample indices of every training batch its shards loader serves, 2 epochs
RANK_SCRIPT = r"""
import json, sys
from types import SimpleNamespace
import torch, torch.distributed as dist
from lit_vision.data import streaming

rank, root, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + sys.argv[4], rank=rank, world_size=2)
streaming.PhotoTransform.train = lambda self, item, epoch: torch.tensor(int(item["index"]))
dm = streaming.ShardsDataModule(root=root, image_size=16, batch_size=4, eval_batch_size=8, crop_scale=[0.08, 1],
                                crop_ratio=[0.75, 1.33], eval_crop_fraction=0.875, num_workers=2, seed=3)
dm.trainer = SimpleNamespace(world_size=2, num_nodes=1, strategy=SimpleNamespace(root_device=torch.device("cpu")))
dm.setup()
loader = dm.train_dataloader()
epochs = [[batch[0].tolist() for batch in loader] for _ in range(2)]
json.dump({"len": len(loader), "epochs": epochs}, open(out, "w"))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_ranks_read_disjoint_samples_with_equal_batch_counts(shard_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    port = "29631"
    procs = [subprocess.Popen([sys.executable, str(script), str(rank), str(shard_dir), str(tmp_path / f"{rank}.json"),
                               port], stderr=subprocess.PIPE, text=True) for rank in range(2)]
    for proc in procs:
        assert proc.wait(timeout=180) == 0, proc.stderr.read()[-3000:] if proc.stderr else ""
    ranks = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    train_count = len((shard_dir / "train" / "sources.txt").read_text().splitlines())  # 81
    for epoch in range(2):
        served = [[i for batch in r["epochs"][epoch] for i in batch] for r in ranks]
        assert len(ranks[0]["epochs"][epoch]) == len(ranks[1]["epochs"][epoch]) == ranks[0]["len"]
        assert len(served[0]) == len(served[1])  # equal shares: no rank waits at the epoch's end
        assert not set(served[0]) & set(served[1])  # disjoint
        assert len(set(served[0]) | set(served[1])) == len(served[0]) + len(served[1]) >= train_count - 2 * 4
    assert ranks[0]["epochs"][0] != ranks[0]["epochs"][1]  # reshuffled each epoch


@pytest.mark.slow
def test_a_two_process_ddp_run_on_shards_tests_every_image_once(shard_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    logs = tmp_path / "outputs"
    res = cli(["trainer=ddp", "accelerator=cpu", "trainer.devices=2", "data=shards", f"data.root={shard_dir}",
               "data.image_size=16", "data.batch_size=8", "data.num_workers=1", "model=dense",
               "trainer.max_epochs=2", f"paths.log_dir={logs}", *QUIET])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (out,) = list((logs / "train" / "runs").iterdir())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_trained"] == 2
    assert sum(map(sum, metrics["confusion_matrix"])) == 18 and metrics["support"] == {"a": 6, "b": 6, "c": 6}
    assert (out / "predictions.csv").read_text().count("\n") == 18 + 1
