"""The zoo against its references: torchvision's parameter counts, small inputs, the registry.

Every registered model is built at 28x28 grey and 32x32 colour by keyword and
run forward. The 224 builds live on the meta device (shapes only: no memory,
no initialisation, no arithmetic), so the file stays fast.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn as nn

from cnnzip.cli.app import parse_kwargs
from cnnzip.errors import ModelError
from cnnzip.models import get_model, list_models, register_model
from cnnzip.models.layers import ConvNormAct
from cnnzip.models.registry import data_kwargs
from cnnzip.models.shufflenet import channel_shuffle
from cnnzip.models.squeezenet import Fire

# The families of this zoo, which take injected conv/norm/act/linear factories.
CNNS = [
    "alexnet",
    "googlenet",
    "mobilenet_v1",
    "resnet18",
    "resnet50",
    "shufflenet_v1",
    "squeezenet1_0",
    "squeezenet1_1",
    "vgg16",
]

# torchvision's counts at 224x224 and 1000 classes; MobileNet's is Keras' trainable count.
TORCHVISION_PARAMS = {
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
    "googlenet": 6_624_904,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "squeezenet1_0": 1_248_424,
    "squeezenet1_1": 1_235_496,
    "mobilenet_v1": 4_231_976,
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, **kwargs: object) -> nn.Module:
    """Built on the meta device: shapes only, so a 138M-parameter VGG costs nothing."""
    with torch.device("meta"):
        return get_model(name, **kwargs)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)], ids=["28grey", "32colour"])
@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_on_small_inputs(name: str, shape: tuple[int, int, int]) -> None:
    # The builder arguments come from the data exactly as `cnnzip train` sets them.
    torch.manual_seed(0)
    model = get_model(name, **data_kwargs(name, {}, shape, num_classes=10)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, *shape))
    assert out.shape == (1, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", CNNS)
def test_imagenet_size_forward_shapes_on_the_meta_device(name: str) -> None:
    # Meta tensors carry shapes through every layer without computing anything.
    model = meta_model(name).eval()
    assert model(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 1000)


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_counts_equal_the_references(name: str) -> None:
    assert n_params(meta_model(name)) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize(
    ("alpha", "params"), [(0.75, 2_585_560), (0.5, 1_331_592), (0.25, 470_072)]
)
def test_mobilenet_width_multiplier_scales_every_layer(alpha: float, params: int) -> None:
    # Keras' MobileNet(alpha) trainable counts (paper Table 6: 2.6M, 1.3M, 0.5M).
    model = meta_model("mobilenet_v1", width_mult=alpha)
    assert n_params(model) == params
    assert model.fc.in_features == int(1024 * alpha)


@pytest.mark.parametrize(
    ("groups", "stage_chs"),
    [(1, (144, 288, 576)), (2, (200, 400, 800)), (3, (240, 480, 960)),
     (4, (272, 544, 1088)), (8, (384, 768, 1536))],
)  # fmt: skip
def test_shufflenet_stage_widths_follow_table_1(groups: int, stage_chs: tuple[int, ...]) -> None:
    model = meta_model("shufflenet_v1", groups=groups)
    stages = (model.stage2, model.stage3, model.stage4)
    assert tuple(s[-1].conv2.conv.out_channels for s in stages) == stage_chs
    first = model.stage2[0]
    assert first.conv1.conv.groups == 1  # stage 2's first pointwise conv sees only 24 channels
    assert first.conv1.conv.out_channels == stage_chs[0] // 4  # bottleneck = out / 4
    assert first.conv2.conv.out_channels == stage_chs[0] - 24  # concat with the pooled input
    assert model.stage3[1].conv1.conv.groups == groups


def test_shufflenet_1x_g3_has_about_1_9m_parameters() -> None:
    assert n_params(meta_model("shufflenet_v1", groups=3)) == pytest.approx(1.9e6, rel=0.03)


def test_shufflenet_scale_multiplies_channels() -> None:
    half = meta_model("shufflenet_v1", groups=3, scale=0.5)
    assert half.stem.conv.out_channels == 12
    assert half.stage4[-1].conv2.conv.out_channels == 480


def test_channel_shuffle_equals_the_hand_computation() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)
    # groups of 2: (0 1 2 | 3 4 5) -> one channel from each group in turn
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    # groups of 3: (0 1 | 2 3 | 4 5)
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    y = torch.randn(2, 12, 3, 3)
    assert torch.equal(channel_shuffle(y, 4)[:, 1], y[:, 3])  # out 1 = group 1's first = in 3


def _output(name: str, **kwargs: object) -> torch.Tensor:
    """The output of ``name`` built with ``kwargs`` and seed 0, on a fixed 16x16 input."""
    torch.manual_seed(0)
    model = get_model(name, img_size=16, num_classes=10, **kwargs).eval()
    with torch.no_grad():
        return model(torch.ones(1, 3, 16, 16))


def test_shuffle_false_changes_the_function_with_the_same_weights() -> None:
    # shuffling creates no parameter, so both builds draw the same weights
    shuffled = _output("shufflenet_v1", groups=3)
    assert not torch.allclose(shuffled, _output("shufflenet_v1", groups=3, shuffle=False))
    # with one group there is nothing to shuffle: the ablation is the same network
    assert torch.equal(
        _output("shufflenet_v1", groups=1), _output("shufflenet_v1", groups=1, shuffle=False)
    )


def test_fire_bypass_adds_the_input_or_a_1x1_projection() -> None:
    conv = partial(ConvNormAct, norm_layer=None)
    x = torch.randn(2, 8, 5, 5)
    fire = Fire(8, 2, 4, shortcut="identity", conv=conv)
    out = fire(x)
    fire.shortcut = None
    assert torch.allclose(out, fire(x) + x)
    x = torch.randn(2, 6, 5, 5)
    fire = Fire(6, 2, 4, shortcut="conv", conv=conv)
    out = fire(x)
    proj = fire.shortcut(x)  # (2, 8, 5, 5)
    fire.shortcut = None
    assert torch.allclose(out, fire(x) + proj)


@pytest.mark.parametrize(
    ("name", "extra"),
    # complex bypass: 1x1 convs (with bias) around fire2, 4, 6, 8
    [("squeezenet1_0", 96 * 128 + 128 + 128 * 256 + 256 + 256 * 384 + 384 + 384 * 512 + 512),
     ("squeezenet1_1", 64 * 128 + 128 + 128 * 256 + 256 + 256 * 384 + 384 + 384 * 512 + 512)],
)  # fmt: skip
def test_squeezenet_bypass_variants(name: str, extra: int) -> None:
    base = n_params(meta_model(name))
    simple = meta_model(name, bypass="simple")
    complex_ = meta_model(name, bypass="complex")
    fires = [m for m in simple.modules() if isinstance(m, Fire)]
    assert [type(f.shortcut).__name__ for f in fires] == ["NoneType", "Identity"] * 4
    assert n_params(simple) == base  # identity shortcuts cost nothing
    assert n_params(complex_) == base + extra
    assert not torch.allclose(_output(name), _output(name, bypass="simple"))
    with pytest.raises(ModelError, match="bypass"):
        get_model(name, bypass="dense")


@pytest.mark.parametrize("name", CNNS)
def test_layers_are_injected_factories(name: str) -> None:
    class MarkedConv(nn.Conv2d):
        pass

    class MarkedNorm(nn.BatchNorm2d):
        pass

    class MarkedLinear(nn.Linear):
        pass

    extra = {} if name.startswith("squeezenet") else {"linear_layer": MarkedLinear}
    model = meta_model(
        name, conv_layer=MarkedConv, norm_layer=MarkedNorm, act_layer=nn.ReLU6, **extra
    )
    kinds = {type(m) for m in model.modules()}
    assert MarkedConv in kinds and MarkedNorm in kinds and nn.ReLU6 in kinds
    assert not kinds & {nn.Conv2d, nn.BatchNorm2d, nn.ReLU}  # nothing built around the factories
    assert (MarkedLinear in kinds) == ("linear_layer" in extra)
    assert nn.Linear not in kinds


@pytest.mark.parametrize("name", CNNS)
def test_small_stem_is_the_same_network(name: str) -> None:
    # Dropping the stem's stride and max-pool changes no layer: same parameters at any size.
    at_224 = n_params(meta_model(name, num_classes=10))
    assert n_params(meta_model(name, num_classes=10, img_size=28)) == at_224
    assert n_params(meta_model(name, num_classes=10, small_input=True)) == at_224


def test_small_stem_keeps_resolution_for_28px_inputs() -> None:
    model = meta_model("resnet18", img_size=28)
    x = model.maxpool(model.stem(torch.empty(1, 3, 28, 28, device="meta")))
    assert x.shape[-1] == 28  # no stride, no max-pool
    assert model.layer4(model.layer3(model.layer2(model.layer1(x)))).shape == (1, 512, 4, 4)


@pytest.mark.parametrize(("img_size", "stride"), [(28, 1), (56, 1), (63, 1), (64, 2), (224, 2)])
def test_mobilenet_small_stem_below_64_px(img_size: int, stride: int) -> None:
    # its docstring: the stem runs at stride 1 for inputs under SMALL_INPUT_BELOW (64)
    model = meta_model("mobilenet_v1", img_size=img_size)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.stride == (stride, stride)


def test_unknown_model_names_the_closest_match() -> None:
    with pytest.raises(ModelError, match="Did you mean 'shufflenet_v1'"):
        get_model("shufflenet_v2")


def test_duplicate_registration_is_refused() -> None:
    def alexnet() -> nn.Module:
        return nn.Identity()

    with pytest.raises(ValueError, match="already registered"):
        register_model()(alexnet)
    assert type(meta_model("alexnet")).__name__ == "AlexNet"  # the first one stays


def test_builder_keywords_as_the_cli_passes_them() -> None:
    kwargs = parse_kwargs(("width_mult=0.5", "num_classes=7"))
    model = meta_model("mobilenet_v1", **kwargs)
    assert (model.fc.in_features, model.fc.out_features) == (512, 7)
    model = meta_model("shufflenet_v1", **parse_kwargs(("groups=8", "shuffle=false")))
    assert model.stage3[0].shuffle_groups == 1 and model.stage3[0].conv1.conv.groups == 8
    model = meta_model("squeezenet1_1", **parse_kwargs(("bypass=complex",)))
    assert sum(isinstance(m, Fire) and m.shortcut is not None for m in model.modules()) == 8


def test_bad_builder_keywords_are_model_errors() -> None:
    with pytest.raises(ModelError, match="groups"):
        get_model("shufflenet_v1", groups=5)
    with pytest.raises(ModelError, match="width_mult"):
        get_model("mobilenet_v1", width_mult=0)
    with pytest.raises(ModelError, match="depth"):
        get_model("resnet18", depth=34)
