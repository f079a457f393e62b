"""Activations, initialisations and models of the harness (augkit.train), with real torch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from augkit.errors import AugkitError
from augkit.train.activations import Maxout, create_activation, gain, list_activations, width_factor
from augkit.train.config import TrainConfig
from augkit.train.inits import init_weights, list_inits
from augkit.train.models import BasicBlock, count_parameters, create_model, list_models

SMALL = {"hidden": (16, 16), "channels": (4, 8)}  # small widths keep model tests fast


def small_config(**changes) -> TrainConfig:
    return TrainConfig(**{**SMALL, **changes})


# --- activations ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_activations())
@pytest.mark.parametrize("spatial", [(), (5, 5)], ids=["NC", "NCHW"])
def test_activation_maps_features_to_units_and_passes_gradients(name: str, spatial: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    act = create_activation(name, channels=4, pieces=3)
    x = torch.randn(6, 4 * width_factor(name, 3), *spatial, requires_grad=True)
    out = act(x)
    assert out.shape == (6, 4, *spatial)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list_activations())
def test_create_activation_returns_a_new_module_per_call(name: str) -> None:
    assert create_activation(name, channels=4) is not create_activation(name, channels=4)


@pytest.mark.parametrize("lookup", [lambda n: create_activation(n, channels=2), gain, lambda n: width_factor(n, 2)])
def test_unknown_activation_lists_choices_and_suggests_close_match(lookup) -> None:
    message = r"unknown activation 'relux' \(did you mean relu.*choose one of: sigmoid, tanh"
    with pytest.raises(AugkitError, match=message):
        lookup("relux")


def test_leaky_relu_uses_the_given_slope() -> None:
    act = create_activation("leaky_relu", channels=2, slope=0.2)
    assert torch.equal(act(torch.tensor([[-1.0, 2.0]])), torch.tensor([[-0.2, 2.0]]))


@pytest.mark.parametrize(("per_channel", "count"), [(True, 7), (False, 1)])
def test_prelu_learns_one_slope_per_channel_or_one_shared(per_channel: bool, count: int) -> None:
    act = create_activation("prelu", channels=7, per_channel=per_channel)
    slopes = [p for p in act.parameters() if p.requires_grad]
    assert sum(p.numel() for p in slopes) == count
    assert torch.all(slopes[0] == 0.25)


def test_maxout_takes_the_max_of_each_units_contiguous_pieces() -> None:
    act = create_activation("maxout", channels=2, pieces=3)
    # unit 0: features 0..2, unit 1: features 3..5
    assert torch.equal(act(torch.tensor([[1.0, 5.0, 3.0, 2.0, 0.0, -1.0]])), torch.tensor([[5.0, 2.0]]))
    planes = torch.tensor([[[[1.0]], [[-4.0]], [[0.5]], [[7.0]], [[2.0]], [[3.0]]]])  # (1, 6, 1, 1)
    assert torch.equal(act(planes).flatten(), torch.tensor([1.0, 7.0]))


def test_maxout_rejects_a_feature_count_that_is_not_units_times_pieces() -> None:
    with pytest.raises(ValueError, match="2 x 3 features"):
        Maxout(2, 3)(torch.zeros(1, 5))


def test_maxout_needs_two_pieces() -> None:
    with pytest.raises(AugkitError, match="at least 2 pieces"):
        create_activation("maxout", channels=2, pieces=1)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "leaky_relu"])
def test_gain_matches_torch_where_the_conventions_agree(name: str) -> None:
    assert gain(name, 0.2) == pytest.approx(nn.init.calculate_gain(name, 0.2))


def test_gain_of_prelu_is_leaky_relus_at_the_initial_slope_and_selu_is_lecuns() -> None:
    assert gain("prelu") == pytest.approx(math.sqrt(2 / (1 + 0.25**2)))
    assert gain("selu") == 1.0  # not torch's 3/4


# --- initialisations --------------------------------------------------------------------------

FAN_IN, FAN_OUT = 4096, 1024
EXPECTED_STD = {
    # name, mode -> std of the weights by the formula (ReLU gain sqrt(2); std argument 0.05)
    ("normal", "fan_in"): 0.05,
    ("uniform", "fan_in"): 0.05,
    ("xavier_normal", "fan_in"): math.sqrt(2 / (FAN_IN + FAN_OUT)),
    ("xavier_uniform", "fan_in"): math.sqrt(6 / (FAN_IN + FAN_OUT)) / math.sqrt(3),
    ("kaiming_normal", "fan_in"): math.sqrt(2 / FAN_IN),
    ("kaiming_normal", "fan_out"): math.sqrt(2 / FAN_OUT),
    ("kaiming_uniform", "fan_in"): math.sqrt(3 * 2 / FAN_IN) / math.sqrt(3),
    ("kaiming_uniform", "fan_out"): math.sqrt(3 * 2 / FAN_OUT) / math.sqrt(3),
    ("lecun_normal", "fan_in"): math.sqrt(1 / FAN_IN),
    ("orthogonal", "fan_in"): math.sqrt(2) / math.sqrt(FAN_IN),  # orthonormal rows of length 4096, x gain
}


@pytest.fixture(scope="module")
def wide_linear() -> nn.Linear:
    return nn.Linear(FAN_IN, FAN_OUT)


@pytest.mark.parametrize(("name", "mode"), list(EXPECTED_STD))
def test_init_weight_std_matches_its_formula(wide_linear: nn.Linear, name: str, mode: str) -> None:
    torch.manual_seed(0)
    init_weights(wide_linear, name, std=0.05, mode=mode, activation="relu")
    assert wide_linear.weight.std().item() == pytest.approx(EXPECTED_STD[name, mode], rel=0.02)
    assert wide_linear.weight.mean().abs().item() < 0.01 * EXPECTED_STD[name, mode] + 1e-4
    assert torch.all(wide_linear.bias == 0)


def test_kaiming_normal_multiplies_by_the_gain_rather_than_dividing(wide_linear: nn.Linear) -> None:
    torch.manual_seed(0)
    init_weights(wide_linear, "kaiming_normal")
    divided = 1 / math.sqrt(2 / FAN_IN)  # randn / sqrt(2 / fan_in)
    assert wide_linear.weight.std().item() == pytest.approx(math.sqrt(2 / FAN_IN), rel=0.02)
    assert wide_linear.weight.std().item() < divided / 100


def test_kaiming_gain_follows_the_activation_and_its_slope() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(2048, 512)
    init_weights(layer, "kaiming_normal", activation="leaky_relu", slope=0.5)
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / 1.25) / math.sqrt(2048), rel=0.02)
    init_weights(layer, "kaiming_normal", activation="tanh")
    assert layer.weight.std().item() == pytest.approx((5 / 3) / math.sqrt(2048), rel=0.02)


def test_conv_fans_count_the_kernel_area() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 128, 3)
    init_weights(conv, "kaiming_normal", mode="fan_out")
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.02)


def test_orthogonal_gives_orthonormal_columns_times_the_gain() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(64, 128)  # weight (128, 64): columns are the fewer side
    init_weights(layer, "orthogonal", activation="tanh")
    gram = layer.weight.T @ layer.weight
    assert torch.allclose(gram, (5 / 3) ** 2 * torch.eye(64), atol=1e-4)


@pytest.mark.parametrize(("name", "value"), [("zeros", 0.0), ("constant", 0.3)])
def test_zeros_and_constant_fill_every_weight(name: str, value: float) -> None:
    layer = nn.Linear(8, 4)
    init_weights(layer, name, std=0.3)
    assert torch.all(layer.weight == value) and torch.all(layer.bias == 0)


def test_default_leaves_torchs_own_init_biases_included() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(32, 16)
    weight, bias = layer.weight.clone(), layer.bias.clone()
    init_weights(layer, "default")
    assert torch.equal(layer.weight, weight) and torch.equal(layer.bias, bias)
    assert bias.abs().sum() > 0  # torch's biases are not zero, so the test can tell


def test_init_resets_norm_layers_to_the_identity() -> None:
    norm = nn.BatchNorm1d(4)
    with torch.no_grad():
        norm.weight.fill_(3.0)
        norm.bias.fill_(2.0)
    init_weights(nn.Sequential(nn.Linear(4, 4), norm), "normal")
    assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


def test_unknown_init_and_bad_mode_are_user_errors() -> None:
    with pytest.raises(AugkitError, match=r"unknown initialisation 'kaiming_norml'.*did you mean kaiming_normal"):
        init_weights(nn.Linear(2, 2), "kaiming_norml")
    with pytest.raises(AugkitError, match="fan_in or fan_out"):
        init_weights(nn.Linear(2, 2), "kaiming_normal", mode="fan_avg")


def _layer_stds(model: nn.Module, x: torch.Tensor) -> list[float]:
    """Std of each activation's output, in order, from forward hooks."""
    stds: list[float] = []
    relus = [m for m in model if isinstance(m, nn.ReLU)]
    handles = [m.register_forward_hook(lambda _m, _i, out: stds.append(out.std().item())) for m in relus]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return stds


@pytest.mark.parametrize(("init", "check"), [
    ("kaiming_normal", lambda ratios: all(0.5 <= r <= 2 for r in ratios)),
    ("normal", lambda ratios: ratios[-1] < 1e-3),
])
def test_deep_relu_mlp_keeps_its_scale_with_kaiming_and_collapses_with_small_normal(init: str, check) -> None:
    torch.manual_seed(0)
    config = TrainConfig(model="mlp", hidden=(512,) * 20, batchnorm=False, init=init, init_std=0.01)
    model = create_model(config, (512, 1, 1), 10)
    x = torch.randn(256, 512, 1, 1)
    stds = _layer_stds(model, x)
    assert len(stds) == 20
    ratios = [s / x.std().item() for s in stds]
    assert check(ratios), ratios


# --- dropout ----------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_mlp_dropout_drops_p_and_scales_kept_units_by_inverse_keep(p: float) -> None:
    torch.manual_seed(0)
    drop = create_model(small_config(model="mlp", dropout=p), (1, 8, 8), 10).drop1
    x = torch.ones(200, 500)
    out = drop.train()(x)
    assert (out == 0).float().mean().item() == pytest.approx(p, abs=0.01)
    kept = out[out != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - p)), rtol=1e-6, atol=0)
    assert torch.equal(drop.eval()(x), x)


def test_cnn_dropout2d_drops_whole_channels() -> None:
    torch.manual_seed(0)
    drop = create_model(small_config(model="cnn", dropout=0.5), (1, 8, 8), 10).stage1.drop
    out = drop.train()(torch.ones(16, 32, 4, 4))
    per_plane = out.flatten(2)
    assert torch.all(per_plane.amin(dim=2) == per_plane.amax(dim=2))  # each channel all dropped or all kept
    assert set(per_plane[..., 0].unique().tolist()) == {0.0, 2.0}


# --- models -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("in_shape", [(1, 8, 8), (3, 32, 32)], ids=["gray8", "rgb32"])
def test_model_gives_logits_per_class(name: str, in_shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = create_model(small_config(model=name, dropout=0.1), in_shape, 7)
    assert model(torch.randn(4, *in_shape)).shape == (4, 7)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("batchnorm", [True, False])
@pytest.mark.parametrize("zero_init", [True, False])
def test_resnet_zero_init_residual_starts_each_block_at_act_of_shortcut(batchnorm: bool, zero_init: bool) -> None:
    torch.manual_seed(0)
    config = small_config(model="resnet", channels=(4, 4, 8), batchnorm=batchnorm, zero_init_residual=zero_init)
    model = create_model(config, (3, 16, 16), 10).eval()
    x = model.stem(torch.randn(2, 3, 16, 16))
    blocks = [m for m in model if isinstance(m, BasicBlock)]
    assert len(blocks) == 3
    with torch.no_grad():
        for block in blocks:
            is_identity_start = torch.allclose(block(x), block.act(block.shortcut(x)))
            assert is_identity_start == zero_init
            x = block(x)


@pytest.mark.parametrize(("name", "side", "message"), [
    ("cnn", 4, r"cnn's 3 stages halve the image 3 times and need at least 8x8 images; the images are 4x4"),
    ("resnet", 2, r"resnet's 3 stages halve the image 2 times and need at least 4x4 images; the images are 2x2"),
])
def test_too_small_images_are_a_user_error_naming_the_fix(name: str, side: int, message: str) -> None:
    with pytest.raises(AugkitError, match=message + ".*fewer --channels or --model mlp"):
        create_model(small_config(model=name, channels=(4, 4, 4)), (1, side, side), 10)


@pytest.mark.parametrize(("name", "sides"), [("cnn", [8, 4, 2]), ("resnet", [16, 8, 4])])
def test_stages_halve_the_image_as_the_size_check_assumes(name: str, sides: list[int]) -> None:
    model = create_model(small_config(model=name, channels=(4, 4, 4)), (1, 16, 16), 10)
    seen: list[int] = []
    for i in (1, 2, 3):
        getattr(model, f"stage{i}").register_forward_hook(lambda _m, _i, out: seen.append(out.shape[-1]))
    model(torch.zeros(1, 1, 16, 16))
    assert seen == sides


def test_smallest_image_a_model_takes_is_accepted() -> None:
    config = small_config(model="cnn", channels=(4, 4, 4))
    assert create_model(config, (1, 8, 8), 10)(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


@pytest.mark.parametrize("classes", [0, 1])
def test_fewer_than_two_classes_is_a_user_error(classes: int) -> None:
    with pytest.raises(AugkitError, match=f"at least 2 classes, got {classes}"):
        create_model(small_config(), (1, 8, 8), classes)


@pytest.mark.parametrize(("field", "value", "kind", "close"), [
    ("model", "resnt", "model", "resnet"),
    ("activation", "relux", "activation", "relu"),
    ("init", "xavier_norml", "initialisation", "xavier_normal"),
])
def test_unknown_names_are_user_errors_with_choices(field: str, value: str, kind: str, close: str) -> None:
    config = small_config()
    setattr(config, field, value)
    with pytest.raises(AugkitError, match=rf"unknown {kind} '{value}' \(did you mean {close}.*choose one of"):
        create_model(config, (1, 8, 8), 10)


@pytest.mark.parametrize("name", list_models())
def test_maxout_works_in_every_model(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(small_config(model=name, activation="maxout", maxout_pieces=3), (3, 8, 8), 5)
    model(torch.randn(4, 3, 8, 8)).sum().backward()
    assert any(isinstance(m, Maxout) for m in model.modules())
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_batchnorm_off_leaves_no_norm_layers(name: str) -> None:
    with_bn = create_model(small_config(model=name), (1, 8, 8), 10)
    without = create_model(small_config(model=name, batchnorm=False), (1, 8, 8), 10)
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in with_bn.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in without.modules())


@pytest.mark.parametrize("name", list_models())
def test_every_activation_module_is_its_own_instance(name: str) -> None:
    model = create_model(small_config(model=name), (1, 8, 8), 10)
    acts = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(acts) >= 2 and len({id(m) for m in acts}) == len(acts)


@pytest.mark.parametrize("model_name", list_models())
@pytest.mark.parametrize("init", list_inits())
def test_every_init_runs_on_every_model(model_name: str, init: str) -> None:
    torch.manual_seed(0)
    model = create_model(small_config(model=model_name, init=init), (1, 8, 8), 10)
    assert torch.isfinite(model(torch.randn(2, 1, 8, 8))).all()


@pytest.mark.parametrize(("alias", "name"), [("xavier", "xavier_normal"), ("kaiming", "kaiming_normal"), ("he", "kaiming_normal")])
@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_the_lectures_init_names_draw_the_same_weights_as_the_normal_variants(alias: str, name: str, model_name: str) -> None:
    def weights(init: str) -> list[torch.Tensor]:
        torch.manual_seed(3)
        return [p.detach().clone() for p in create_model(small_config(model=model_name, init=init), (1, 8, 8), 10).parameters()]

    def drawn(init: str) -> list[torch.Tensor]:  # init_weights itself, not through the config
        torch.manual_seed(3)
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(36, 5))
        init_weights(model, init)
        return [p.detach().clone() for p in model.parameters()]

    assert small_config(init=alias).init == name
    for a, b in [*zip(weights(alias), weights(name), strict=True), *zip(drawn(alias), drawn(name), strict=True)]:
        assert torch.equal(a, b)
    torch.manual_seed(4)  # another seed draws other weights: the comparison can fail
    other = create_model(small_config(model=model_name, init=name), (1, 8, 8), 10)
    assert not all(torch.equal(a, b) for a, b in zip(weights(alias), other.parameters(), strict=True))


def test_an_unknown_init_suggests_an_alias_too() -> None:
    with pytest.raises(AugkitError, match=r"unknown initialisation 'xavir' \(did you mean xavier\?\)"):
        init_weights(nn.Linear(2, 2), "xavir")
    assert "he" not in list_inits() and "kaiming_normal" in list_inits()  # every scheme once, for loops over them
