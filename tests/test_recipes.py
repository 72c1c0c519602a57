"""Recipe knobs (issue 11): each one config switch, each doing what it says."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import FAST

from lit_vision.errors import ConfigError
from lit_vision.models.convnet import build_features
from lit_vision.models.whitening import PatchWhitening
from lit_vision.train import run
from lit_vision.training import recipes
from lit_vision.training.builders import build_classifier, build_datamodule, build_trainer
from lit_vision.training.checkpoints import read_checkpoint

QUIET = ["accelerator=cpu", "~callbacks.progress_bar", "~callbacks.model_summary", "report.plots=false"]


# --- mixup / cutmix ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mixup, cutmix", [(0.2, 0.0), (0.0, 1.0), (0.2, 1.0)])
def test_mixing_gives_soft_targets_that_sum_to_one(mixup: float, cutmix: float) -> None:
    mixer = recipes.batch_mixer({"mixup_alpha": mixup, "cutmix_alpha": cutmix}, num_classes=5)
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 5, (16,))
    mixed, target = mixer(x, y)
    assert mixed.shape == x.shape and target.shape == (16, 5)
    assert torch.allclose(target.sum(1), torch.ones(16))
    assert not torch.equal(mixed, x)  # the images are blended or pasted


def test_mixing_is_off_by_default_and_refuses_unknown_keys() -> None:
    assert recipes.batch_mixer({"mixup_alpha": 0.0, "cutmix_alpha": 0.0}, 10) is None
    with pytest.raises(ConfigError, match="mixup_alfa"):
        recipes.batch_mixer({"mixup_alfa": 0.2}, 10)
    with pytest.raises(ConfigError, match="model.mix.cutmix_alpha"):
        recipes.batch_mixer({"cutmix_alpha": -1}, 10)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_a_run_with_mixup_and_cutmix_trains(make_cfg, loss: str) -> None:
    record = run(make_cfg(*FAST, f"model.loss={loss}", "model.mix.mixup_alpha=0.2", "model.mix.cutmix_alpha=1.0"))
    assert math.isfinite(record["test/loss"]) and 0.0 <= record["test/acc"] <= 1.0


# --- test-time augmentation ----------------------------------------------------------------------------------
def test_shift_moves_pixels_and_keeps_the_size() -> None:
    x = torch.arange(25.0).view(1, 1, 5, 5)
    moved = recipes.shift(x, 1, 2)
    assert moved.shape == x.shape
    assert moved[0, 0, 1, 2] == x[0, 0, 0, 0] and moved[0, 0, 4, 4] == x[0, 0, 3, 2]


@pytest.mark.parametrize("hflip, translate, views", [(False, 0, 1), (True, 0, 2), (False, 2, 3), (True, 2, 6)])
def test_tta_views(hflip: bool, translate: int, views: int) -> None:
    assert len(recipes.tta_views(torch.rand(2, 3, 8, 8), hflip, translate)) == views


def test_evaluation_averages_the_logits_of_the_views(make_cfg) -> None:
    cfg = make_cfg("model=cnn", "model.tta.hflip=true", "model.tta.translate=1")
    model = build_classifier(cfg.model, build_datamodule(cfg)).eval()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        expected = torch.stack([model(v) for v in recipes.tta_views(x, True, 1)]).mean(0)
        assert torch.allclose(model.eval_logits(x), expected, atol=1e-6)
        assert not torch.allclose(model.eval_logits(x), model(x))


def test_tta_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="model.tta.translate"):
        recipes.check_tta({"translate": -1})
    with pytest.raises(ConfigError, match="flip"):
        recipes.check_tta({"flip": True})


# --- optimisation --------------------------------------------------------------------------------------------
def test_warmup_then_cosine() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = recipes.warmup_cosine(opt, total_steps=100, warmup_fraction=0.1, min_lr_fraction=0.05)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < 0.01  # starts near zero
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 10  # peak right after the warmup
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # then only down
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05, abs=1e-6)  # ends at min_lr_fraction x lr


def test_warmup_cosine_preset_key_reaches_the_scheduler(make_cfg) -> None:
    record = run(make_cfg(*FAST, "model.scheduler.name=warmup_cosine", "+model.scheduler.warmup_fraction=0.2"))
    assert math.isfinite(record["test/loss"])
    with pytest.raises(ConfigError, match="warmup_fraction"):
        run(make_cfg(*FAST, "model.scheduler.name=warmup_cosine", "+model.scheduler.warmup_fraction=2"))


def test_no_weight_decay_on_norms_and_biases(make_cfg) -> None:
    cfg = make_cfg("model=cnn", "model.optimizer.weight_decay=0.05", "model.optimizer.decay_norms_and_biases=false")
    model = build_classifier(cfg.model, build_datamodule(cfg))
    groups = model.configure_optimizers().param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.ndim > 1), name  # weights decay, biases and norm parameters do not


def test_nesterov_sgd_and_gradient_clipping_reach_the_optimizer(make_cfg, monkeypatch) -> None:
    norms: list[float] = []
    nesterov: list[bool] = []
    step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):  # noqa: ANN001, ANN202
        result = step(self, *args, **kwargs)  # Lightning's closure computes (and clips) the gradients inside
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        nesterov.append(self.param_groups[0]["nesterov"])
        return result

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    run(make_cfg(*QUIET, "trainer.max_epochs=1", "trainer.limit_train_batches=5", "model.optimizer.name=sgd",
                 "model.optimizer.lr=0.5", "+model.optimizer.momentum=0.9", "+model.optimizer.nesterov=true",
                 "trainer.gradient_clip_val=0.01"))
    assert nesterov and all(nesterov)
    assert max(norms) <= 0.01 + 1e-6  # every step clipped to the configured norm


# --- EMA -----------------------------------------------------------------------------------------------------
def test_ema_weights_are_what_the_checkpoint_and_the_test_use(make_cfg) -> None:
    cfg = make_cfg(*QUIET, "trainer.max_epochs=2", "model.ema_decay=0.9")
    assert any(type(cb).__name__ == "EMAWeightAveraging" for cb in build_trainer(cfg).callbacks)
    record = run(cfg)
    ckpt = read_checkpoint(record["best_checkpoint"])
    averaged, current = ckpt["state_dict"], ckpt["current_model_state"]
    name = next(k for k in averaged if k.endswith("weight"))
    assert not torch.equal(averaged[name], current[name])  # the averaged weights are saved as the model


def test_ema_decay_is_checked(make_cfg) -> None:
    with pytest.raises(ConfigError, match="model.ema_decay"):
        build_trainer(make_cfg("model.ema_decay=1.5"))


# --- whitening stem ------------------------------------------------------------------------------------------
WHITEN_NET = "model.net.features=[{whiten: 8, kernel: 2, act: gelu},{conv: 8, kernel: 3, padding: same},{pool: 2}]"


def test_the_whitening_stem_decorrelates_patches() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 3, 12, 12) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1)
    x = x + x.roll(1, dims=3)  # neighbouring pixels correlated, channels of different scale
    stem = PatchWhitening(3, 24, kernel=2)
    stem.fit(x)
    out = stem(x)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12).double()
    covariance = out.T @ out / len(out)
    # ~unit variance (eps), decorrelated
    assert torch.allclose(covariance, torch.eye(12, dtype=torch.float64), atol=5e-3)
    assert torch.equal(stem.weight[12:], -stem.weight[:12]) and bool(stem.fitted)
    assert not stem.weight.requires_grad and stem.bias.requires_grad  # frozen filters, a trained bias


def test_whitening_stem_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="even number up to 2 x 3 x 2"):
        PatchWhitening(3, 25, kernel=2)
    with pytest.raises(ConfigError, match="must be the first block"):
        build_features([{"conv": 4}, {"whiten": 8}], in_chans=3)
    with pytest.raises(ConfigError, match="unknown key"):
        build_features([{"whiten": 8, "padding": "same"}], in_chans=3)


def test_a_run_fits_the_whitening_stem_on_its_training_images_once(make_cfg, monkeypatch) -> None:
    cfg = make_cfg(*QUIET, "trainer.max_epochs=1", WHITEN_NET, "model.net.head.hidden=[]")
    record = run(cfg)
    state = read_checkpoint(record["best_checkpoint"])["state_dict"]
    dm = build_datamodule(cfg)
    model = build_classifier(cfg.model, dm)
    expected = PatchWhitening(dm.channels, 8, kernel=2)
    expected.fit(model.preprocess(dm.train_sample(5000)))
    assert bool(state["net.features.0.fitted"])
    assert torch.allclose(state["net.features.0.weight"], expected.weight, atol=1e-5)  # fitted, then frozen
    model.load_state_dict(state)
    monkeypatch.setattr(PatchWhitening, "fit", lambda *a: pytest.fail("a restored stem was refitted"))
    model._fit_whitening()  # restored: nothing to fit, and no data module needed
