"""``python -m lit_vision.export_backbone <ckpt> <out.safetensors>``: a trained timm backbone as a weights file.

The file loads offline as ``model.net.weights=<out>`` (e.g. notebook 004's frozen-backbone head, see
``conf/experiment/fer_backbone_pretrain.yaml``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from lit_vision.commands.arguments import ArgumentParser, output_file
from lit_vision.commands.runner import exit_on_user_error
from lit_vision.errors import LitVisionError
from lit_vision.models.timm_net import WEIGHT_SUFFIXES, WeightsError
from lit_vision.training.checkpoints import read_checkpoint

PREFIX = "net.backbone."
#: what ``model.net.weights`` loads, the recommended one first
SUFFIXES = (".safetensors", *(s for s in WEIGHT_SUFFIXES if s != ".safetensors"))


def export_backbone(ckpt_path: str | Path, out: str | Path) -> Path:
    """Write the backbone weights of a trained ``timm`` net checkpoint as a state dict usable as ``model.net.weights``.

    ``.safetensors`` (recommended) or ``.pth``; the keys are timm's, so any timm net of the same backbone loads it.
    """
    if Path(ckpt_path).expanduser().is_dir():
        raise LitVisionError(f"checkpoint {ckpt_path} is a folder; pass the .ckpt file, e.g. "
                             f"{Path(ckpt_path) / 'checkpoints' / 'best.ckpt'}")
    ckpt = read_checkpoint(ckpt_path)
    state = {k[len(PREFIX):]: v.contiguous() for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}
    if not state:
        raise WeightsError(f"checkpoint {ckpt_path} has no timm backbone (no '{PREFIX}*' weights); "
                           "export from a run with model=vgg16 (or another timm backbone)")
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(out))
    else:
        torch.save(state, out)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = ArgumentParser(prog="python -m lit_vision.export_backbone", description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="<run>/checkpoints/best.ckpt of a model=vgg16 (timm backbone) run")
    ap.add_argument("out", type=output_file(*SUFFIXES),
                    help="output file, .safetensors (recommended) or .pth (what model.net.weights loads)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    path = exit_on_user_error(lambda: export_backbone(args.checkpoint, args.out))
    print(f"backbone weights written to {path}; use them with model.net.weights={path}")


if __name__ == "__main__":
    main()
