"""Recipe knobs (issue 11): each one config switch, each doing what it says."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import FAST
from omegaconf import OmegaConf

from lit_vision.commands.train import run
from lit_vision.errors import ConfigError, LitVisionError
from lit_vision.models.convnet import build_features
from lit_vision.models.whitening import PatchWhitening, unfitted_stems
from lit_vision.training import losses, optim, recipes
from lit_vision.training.builders import build_classifier, build_datamodule, build_trainer, fit_whitening
from lit_vision.training.checkpoints import load_classifier, read_checkpoint

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


# --- losses by name (training/losses.py) --------------------------------------------------------------------
def test_the_named_losses_compute_what_they_say() -> None:
    torch.manual_seed(0)
    logits, y, weight = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0]), torch.tensor([1.0, 2.0, 0.5])
    ce = losses.LOSSES["ce"](logits, y, num_classes=3, class_weight=weight, label_smoothing=0.1)
    assert torch.allclose(ce, torch.nn.functional.cross_entropy(logits, y, weight=weight, label_smoothing=0.1))
    mse = losses.LOSSES["mse"](logits, y, num_classes=3, class_weight=None, label_smoothing=0.0)
    assert torch.allclose(mse, ((logits.softmax(1) - torch.eye(3)[y]) ** 2).mean())
    one, yb, wb = torch.randn(6, 1), torch.tensor([0, 1, 1, 0, 1, 0]), torch.tensor([1.0, 3.0])
    bce = losses.LOSSES["bce"](one, yb, num_classes=2, class_weight=wb, label_smoothing=0.0)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(one[:, 0], yb.float(), pos_weight=wb[1:] / wb[0])
    assert torch.allclose(bce, expected)
    assert losses.num_outputs_for(2, "bce") == 1 and losses.num_outputs_for(2, "ce") == 2
    with pytest.raises(ConfigError, match="needs a binary task"):
        losses.check_loss("bce", class_names=["a", "b", "c"])
    with pytest.raises(ConfigError, match="model.label_smoothing=0.1 is not applied by model.loss=bce"):
        losses.check_loss("bce", label_smoothing=0.1)
    with pytest.raises(ConfigError, match=r"model.loss='hinge' is not one of \['ce', 'bce', 'mse'"):
        losses.check_loss("hinge", class_names=["a", "b"])


def test_a_registered_loss_is_one_config_value_away(make_cfg, monkeypatch) -> None:
    monkeypatch.setattr(losses, "LOSSES", dict(losses.LOSSES))  # registered for this test only

    @losses.register_loss("l1")
    def l1(logits: torch.Tensor, target: torch.Tensor, *, num_classes: int, **_: object) -> torch.Tensor:
        return (losses.probabilities(logits) - losses.one_hot(target, num_classes)).abs().mean()

    cfg = make_cfg("model.loss=l1")
    model = build_classifier(cfg.model, build_datamodule(cfg))
    x, y = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8), torch.tensor([0, 1, 2, 3])
    assert torch.isfinite(model.compute_loss(model(x), y))


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
    sched = optim.warmup_cosine(opt, total_steps=100, warmup_fraction=0.1, min_lr_fraction=0.05)
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
    assert any(type(cb).__name__ == "EMAWeights" for cb in build_trainer(cfg, []).callbacks)
    record = run(cfg)
    ckpt = read_checkpoint(record["best_checkpoint"])
    averaged, current = ckpt["state_dict"], ckpt["current_model_state"]
    name = next(k for k in averaged if k.endswith("weight"))
    assert not torch.equal(averaged[name], current[name])  # the averaged weights are saved as the model
    # the run's test scored the averaged weights, as evaluate (and export, serve) score best.ckpt
    from lit_vision.commands.evaluate import run as evaluate

    scored = evaluate(make_cfg(f"ckpt_path={record['best_checkpoint']}", config_name="evaluate"))
    assert record["test/loss"] == pytest.approx(scored["test/loss"], rel=1e-5)
    assert record["test/acc"] == scored["test/acc"]


def test_ema_decay_is_checked(make_cfg) -> None:
    with pytest.raises(ConfigError, match="model.ema_decay"):
        build_trainer(make_cfg("model.ema_decay=1.5"), [])


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


@pytest.mark.parametrize("channels, width", [(1, 8), (3, 24)])
def test_whiten_all_takes_every_component_of_the_datas_channels(channels: int, width: int) -> None:
    """model=airbench's stem (whiten: all) fits grayscale data (8 filters) as well as RGB (airbench's 24)."""
    features, out = build_features([{"whiten": "all", "kernel": 2}], in_chans=channels)
    assert features[0].out_channels == out == width


def test_a_run_fits_the_whitening_stem_on_its_training_images_once(make_cfg, monkeypatch) -> None:
    cfg = make_cfg(*QUIET, "trainer.max_epochs=1", WHITEN_NET, "model.net.head.hidden=[]")
    record = run(cfg)
    state = read_checkpoint(record["best_checkpoint"])["state_dict"]
    dm = build_datamodule(cfg)
    model = build_classifier(cfg.model, dm)  # fitted when built, before any training
    assert not unfitted_stems(model.net)
    expected = PatchWhitening(dm.channels, 8, kernel=2)
    expected.fit(model.preprocess(dm.train_sample(5000)))
    assert torch.equal(model.net.features[0].weight, expected.weight)
    assert bool(state["net.features.0.fitted"])
    assert torch.allclose(state["net.features.0.weight"], expected.weight, atol=1e-5)  # fitted, then frozen
    restored = load_classifier(record["best_checkpoint"])  # what evaluate/predict/export load: the trained stem
    assert not unfitted_stems(restored.net)
    assert torch.equal(restored.net.features[0].weight, state["net.features.0.weight"])
    monkeypatch.setattr(PatchWhitening, "fit", lambda *a: pytest.fail("a restored stem was refitted"))
    fit_whitening(restored, dm)  # restored: nothing to fit


def test_fitting_with_an_unfitted_whitening_stem_is_refused(make_cfg) -> None:
    cfg = make_cfg(*FAST, WHITEN_NET, "model.net.head.hidden=[]")
    dm = build_datamodule(cfg)
    model = build_classifier(cfg.model, dm)
    model.net.features[0].fitted.fill_(False)  # as a classifier built without build_classifier
    with pytest.raises(LitVisionError, match="whitening stem"):
        build_trainer(cfg, []).fit(model, datamodule=dm)


@pytest.mark.parametrize("model", ["airbench", "airbench94"])
@pytest.mark.parametrize("stem, first_layer", [("whiten", PatchWhitening), ("conv", torch.nn.Conv2d)])
def test_the_stem_switch_picks_the_first_block(make_cfg, model: str, stem: str, first_layer: type) -> None:
    cfg = make_cfg(f"model={model}", f"model.stem={stem}")
    specs = OmegaConf.to_container(cfg.model.net.features, resolve=True)
    features, _ = build_features(specs, in_chans=3)
    assert type(features[0]) is first_layer
    assert features[0].weight.requires_grad == (stem == "conv")  # learned 2x2 conv vs frozen whitening filters


# --- airbench's net details: conv/bn/head options, identity init ---------------------------------------------
def test_conv_bias_and_batchnorm_options_build_what_they_say() -> None:
    features, _ = build_features([{"conv": 8, "kernel": 3, "padding": "same", "bias": False},
                                  {"bn": True, "momentum": 0.4, "eps": 1e-12, "learn_scale": False}], in_chans=3)
    conv, bn = features[0], features[2]
    assert conv.bias is None
    assert bn.momentum == 0.4 and bn.eps == 1e-12
    assert not bn.weight.requires_grad and bn.bias.requires_grad  # the scale frozen at 1, the shift trained
    assert torch.equal(bn.weight, torch.ones(8))


@pytest.mark.parametrize("spec, key", [({"bn": True, "momentum": 0.0}, "momentum"), ({"bn": True, "eps": -1}, "eps"),
                                       ({"bn": True, "learn_scale": "no"}, "learn_scale"),
                                       ({"conv": 4, "bias": 0}, "bias"), ({"bn": True, "affine": False}, "unknown"),
                                       ({"conv": 4, "padding": "full"}, r"model\.net\.features\.0\.padding='full'")])
def test_bad_block_options_are_refused_by_name(spec: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        build_features([spec], in_chans=3)


def test_dirac_init_starts_each_conv_as_an_identity_on_its_inputs() -> None:
    from lit_vision.models.convnet import ConvNet

    net = ConvNet(3, [8, 8], 5, [{"conv": 6, "kernel": 3, "padding": "same", "act": "none"}], init="dirac")
    conv = net.features[0]
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        out = conv(x)
    assert torch.allclose(out[:, :3], x, atol=1e-6)  # the first in_channels filters pass the input through
    assert not torch.allclose(out[:, 3:], torch.zeros_like(out[:, 3:]))  # the others keep PyTorch's random init


def test_head_without_bias_and_with_a_logit_scale(make_cfg) -> None:
    from lit_vision.models.convnet import ConvNet

    net = ConvNet(3, [8, 8], 4, [{"conv": 4, "kernel": 3}], head={"hidden": [], "bias": False, "scale": 0.25})
    x = torch.randn(2, 3, 8, 8)
    assert net.classifier.bias is None
    with torch.no_grad():
        assert torch.allclose(net(x), 0.25 * net.classifier(net.forward_features(x)))
    with pytest.raises(ConfigError, match="model.net.head.scale"):
        ConvNet(3, [8, 8], 4, [{"conv": 4}], head={"scale": 0})


# --- airbench's optimisation: norm-bias learning rate, triangle schedule, lookahead ----------------------------
AIRBENCH_BN = ("model.net.features=[{conv: 8, kernel: 3, padding: same, bias: false, act: none},"
               "{bn: true, learn_scale: false},{act: relu},{pool: 2}]")


def test_norm_biases_train_at_a_scaled_learning_rate_with_unchanged_decay_per_step(make_cfg) -> None:
    cfg = make_cfg("model=cnn", AIRBENCH_BN, "model.net.head.hidden=[]", "model.optimizer.name=sgd",
                   "model.optimizer.lr=0.1", "model.optimizer.weight_decay=0.01",
                   "model.optimizer.norm_bias_lr_scale=64")
    model = build_classifier(cfg.model, build_datamodule(cfg))
    groups = model.configure_optimizers().param_groups
    by_param = {id(p): g for g in groups for p in g["params"]}
    bn = model.net.features[2]  # conv, its (identity) activation, bn
    assert id(bn.weight) not in by_param  # frozen: not given to the optimizer
    assert by_param[id(bn.bias)]["lr"] == pytest.approx(6.4)
    assert by_param[id(bn.bias)]["lr"] * by_param[id(bn.bias)]["weight_decay"] == pytest.approx(0.1 * 0.01)
    conv = model.net.features[0]
    assert by_param[id(conv.weight)]["lr"] == pytest.approx(0.1) and by_param[id(conv.weight)]["weight_decay"] == 0.01
    with pytest.raises(ConfigError, match="norm_bias_lr_scale"):
        optim.parameter_groups(model, 0.1, 0.0, norm_bias_lr_scale=0)


def lrs_over(sched_factory, total: int = 100, group_lrs: tuple[float, ...] = (1.0,)) -> list[list[float]]:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in group_lrs]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, group_lrs)])
    sched = sched_factory(opt, total)
    lrs = []
    for _ in range(total + 1):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return lrs


def test_triangle_schedule_rises_then_falls_linearly() -> None:
    lrs = [g[0] for g in lrs_over(lambda o, n: optim.triangle(o, n, 0.2, 0.25, 0.05))]
    assert lrs[0] == pytest.approx(0.2) and lrs[25] == pytest.approx(1.0) and lrs[100] == pytest.approx(0.05)
    assert lrs[10] == pytest.approx(0.2 + 0.8 * 10 / 25)  # linear on the way up
    assert lrs[50] == pytest.approx(1.0 - 0.95 * 25 / 75)  # and down
    with pytest.raises(ConfigError, match="peak_at"):
        optim.triangle(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 10, peak_at=1.5)


@pytest.mark.parametrize("schedule", [lambda o, n: optim.warmup_cosine(o, n, 0.1, 0.05),
                                      lambda o, n: optim.triangle(o, n),
                                      lambda o, n: torch.optim.lr_scheduler.OneCycleLR(
                                          o, max_lr=[g["lr"] for g in o.param_groups], total_steps=n + 1)])
def test_schedules_keep_each_groups_own_learning_rate(schedule) -> None:
    for base, scaled in lrs_over(schedule, group_lrs=(0.1, 6.4)):
        assert scaled == pytest.approx(64 * base)


def test_a_triangle_run_trains(make_cfg) -> None:
    record = run(make_cfg(*FAST, "model.optimizer.name=sgd", "model.optimizer.lr=0.1",
                          "model.scheduler.name=triangle", "+model.scheduler.peak_at=0.5"))
    assert math.isfinite(record["test/loss"])


def test_lookahead_pulls_the_net_to_its_average_and_checkpoints_it(make_cfg) -> None:
    from lit_vision.training.lookahead import Lookahead

    cfg = make_cfg(*QUIET, "trainer.max_epochs=2", "model.lookahead={every: 1, start_epoch: 0, power: 0}")
    (lookahead,) = [cb for cb in build_trainer(cfg, []).callbacks if isinstance(cb, Lookahead)]
    assert (lookahead.every, lookahead.decay, lookahead.start_epoch) == (1, 0.95, 0)  # missing keys: airbench's
    record = run(cfg)
    ckpt = read_checkpoint(record["last_checkpoint"] if "last_checkpoint" in record else record["best_checkpoint"])
    (state,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("Lookahead")]
    weights = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    for name, average in state["average"].items():
        assert torch.equal(weights[name], average), name  # at an epoch's end the net is the average


def test_lookahead_update_is_a_lerp_towards_the_net() -> None:
    from lit_vision.training.lookahead import Lookahead

    net = torch.nn.Linear(2, 1)
    module = torch.nn.Module()
    module.net = net
    lookahead = Lookahead()
    lookahead.average = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lookahead._pull(module, 0.75)
    for name, value in net.state_dict().items():
        assert torch.allclose(value, 0.25 * before[name])  # 0.75 x average (0) + 0.25 x net, copied into the net
        assert torch.equal(lookahead.average[name], value)


@pytest.mark.parametrize("setting, key", [("{every: 0}", "every"), ("{decay: 1.0}", "decay"), ("{lr: 1}", "unknown"),
                                          ("{start_epoch: -1}", "model.lookahead.start_epoch"),
                                          ("{power: -1}", "model.lookahead.power"), ("5", "lookahead")])
def test_lookahead_settings_are_checked(make_cfg, setting: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        build_trainer(make_cfg(f"model.lookahead={setting}"), [])


def test_ema_weights_average_as_lightnings_ema_does_without_reading_its_count() -> None:
    """EMAWeights' foreach update gives the averages of Lightning's EMAWeightAveraging (torch's AveragedModel with
    get_ema_avg_fn), weights and BatchNorm statistics alike, while its update count stays on the host."""
    from lightning.pytorch.callbacks import EMAWeightAveraging
    from torch.optim.swa_utils import AveragedModel

    from lit_vision.training.device_reads import DeviceReads
    from lit_vision.training.ema import EMAWeights

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ours, reference = EMAWeights(decay=0.9), EMAWeightAveraging(decay=0.9)
    for callback in (ours, reference):
        callback._average_model = AveragedModel(net, use_buffers=True, **callback._kwargs)
    ours._updates = 0  # what on_train_start reads once per fit
    with DeviceReads() as reads:
        for _ in range(5):
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(torch.randn_like(p))
            net(torch.randn(8, 3))  # moves the BatchNorm running statistics
            ours.update_average(net)
            reference._average_model.update_parameters(net)
    ours_state, reference_state = ours._average_model.state_dict(), reference._average_model.state_dict()
    floats = [k for k, v in reference_state.items() if v.is_floating_point()]
    assert len(floats) == 6  # weight, bias, BatchNorm's weight, bias, running mean and variance
    for key in floats:
        torch.testing.assert_close(ours_state[key], reference_state[key])
    assert int(ours_state["n_averaged"]) == int(reference_state["n_averaged"]) == 5
    assert not [r for r in reads.reads if "ema.py" in r.site]  # torch's update_parameters reads its count
