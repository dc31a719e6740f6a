"""build_model: the log's hand-written DeepLabV3 on its three backbones, and smp models.

CPU only, random weights, 64x64 inputs. The network is blocked for the whole module, so
a test that tried to download weights would fail rather than pass by luck.
"""

from __future__ import annotations

import socket

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("segmentation_models_pytorch")

from torch import nn  # noqa: E402

from reproduce import models  # noqa: E402
from conftest import make_job  # noqa: E402

pytestmark = pytest.mark.torch

BACKBONES = ("efficientnet-b7", "tf_efficientnet_b7_ns", "tf_efficientnet_b5_ns")
SILU_MIN = -0.2785  # the smallest value SiLU can output


@pytest.fixture(scope="module", autouse=True)
def no_network():
    def refuse(*args, **kwargs):
        raise OSError("network access in a model test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        yield


@pytest.fixture(scope="module")
def built():
    """Each DeepLabV3 backbone built once: the b7 models have ~70M parameters."""
    cache = {}

    def get(backbone: str) -> nn.Module:
        if backbone not in cache:
            torch.manual_seed(0)
            cache[backbone] = models.build_model(make_job(backbone=backbone))
        return cache[backbone]

    return get


@pytest.mark.parametrize("backbone", BACKBONES)
def test_deeplab_forward_backward(built, backbone):
    model = built(backbone).train()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 12, 64, 64)
    model.zero_grad()
    nn.functional.cross_entropy(out, torch.randint(0, 12, (2, 64, 64))).backward()
    stem = model.backbone[0]
    assert stem.weight.grad is not None and stem.weight.grad.abs().sum() > 0
    assert model.backbone(x).shape == (2, 512, 2, 2)  # stride 32, no dilation


@pytest.mark.parametrize(
    ("backbone", "params"),
    [("efficientnet-b7", 69_822_940), ("tf_efficientnet_b7_ns", 69_822_940), ("tf_efficientnet_b5_ns", 34_114_620)],
)
def test_parameter_count(built, backbone, params):
    assert models.count_parameters(built(backbone)) == params


def test_b7_is_taken_apart_without_activations(built):
    from segmentation_models_pytorch.encoders._efficientnet import Conv2dStaticSamePadding, MBConvBlock

    backbone = built("efficientnet-b7").backbone
    assert isinstance(backbone, nn.Sequential)
    assert [name for name, _ in backbone.named_children()] == [
        "_conv_stem", "_bn0", "_blocks", "_conv_head", "_bn1", "projection"
    ]  # fmt: skip
    assert type(backbone._bn0) is nn.BatchNorm2d and type(backbone._bn1) is nn.BatchNorm2d
    assert isinstance(backbone._conv_stem, Conv2dStaticSamePadding)
    assert len(backbone._blocks) == 55 and all(isinstance(b, MBConvBlock) for b in backbone._blocks)
    assert backbone.projection.in_channels == 2560 and backbone.projection.bias is None

    # Without a swish after _bn1, the features keep BatchNorm's negative tail.
    with torch.no_grad():
        features = backbone[:-1].train()(torch.randn(2, 3, 64, 64))
    assert features.shape == (2, 2560, 2, 2)
    assert features.min() < SILU_MIN - 0.1


@pytest.mark.parametrize(("backbone", "features"), [("tf_efficientnet_b7_ns", 2560), ("tf_efficientnet_b5_ns", 2048)])
def test_timm_backbones_keep_their_activations(built, backbone, features):
    from timm.layers import BatchNormAct2d, Conv2dSame

    seq = built(backbone).backbone
    names = [name for name, _ in seq.named_children()]
    assert names == ["conv_stem", "bn1", "blocks", "conv_head", "bn2", "projection"]
    assert isinstance(seq.conv_stem, Conv2dSame)  # TF "same" padding, computed per input
    for bn in (seq.bn1, seq.bn2):
        assert isinstance(bn, BatchNormAct2d) and isinstance(bn.act, nn.SiLU)
    assert seq.projection.in_channels == features and seq.projection.bias is None
    # No stochastic depth.
    assert all(isinstance(m.drop_path, nn.Identity) for m in seq.blocks.modules() if hasattr(m, "drop_path"))
    with torch.no_grad():
        out = seq[:-1].train()(torch.randn(2, 3, 64, 64))
    assert out.min() >= SILU_MIN


def test_b7_static_padding_is_for_600(built):
    blocks = built("efficientnet-b7").backbone._blocks
    # Block 18 halves 75x75 at 600 input; at 512 input it sees 64x64 and "same" padding
    # for it would be (0, 1, 0, 1), so (1, 1, 1, 1) proves the size-600 padding is kept.
    conv = blocks[18]._depthwise_conv
    assert tuple(conv.stride) == (2, 2) and conv.kernel_size == (3, 3)
    assert conv.static_padding.padding == (1, 1, 1, 1)

    with torch.device("meta"):
        model = models.build_model(make_job())
        assert model.backbone(torch.empty(1, 3, 512, 512)).shape == (1, 512, 16, 16)


def test_deeplab_head(built):
    head = built("tf_efficientnet_b5_ns").head
    aspp = head[0]
    assert len(aspp.branches) == 5
    one, *atrous, pooling = aspp.branches
    assert one[0].kernel_size == (1, 1)
    assert [(b[0].kernel_size, b[0].dilation, b[0].padding) for b in atrous] == [
        ((3, 3), (r, r), (r, r)) for r in (6, 12, 18)
    ]
    assert isinstance(pooling, models.ASPPPooling) and isinstance(pooling[0], nn.AdaptiveAvgPool2d)
    assert all(b[0].out_channels == 256 and b[0].in_channels == 512 for b in (one, *atrous))
    assert pooling[1].in_channels == 512 and pooling[1].out_channels == 256 and pooling[1].kernel_size == (1, 1)
    assert aspp.project[0].in_channels == 1280
    dropouts = [m for m in head.modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in dropouts] == [0.5]

    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    assert convs[-1] is head[-1] and convs[-1].out_channels == 12 and convs[-1].bias is not None
    assert all(c.bias is None for c in convs[:-1])
    assert head[1][0].kernel_size == (3, 3) and head[1][0].padding == (1, 1)

    with torch.no_grad():
        pooled = pooling.eval()(torch.randn(1, 512, 3, 5))
    assert pooled.shape == (1, 256, 3, 5)


def test_smp_architecture_forward_backward():
    model = models.build_model(make_job(model="Unet", backbone="resnet18", encoder_weights="imagenet"))
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 12, 64, 64)
    out.mean().backward()
    assert model.encoder.conv1.weight.grad is not None


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown model 'NoSuchNet'.*Unet.*DeepLabV3Plus"):
        models.build_model(make_job(model="NoSuchNet", backbone="resnet18"))
    with pytest.raises(ValueError, match=r"unknown encoder 'resnet19'.*closest: resnet18"):
        models.build_model(make_job(model="Unet", backbone="resnet19"))
    with pytest.raises(ValueError, match=r"unknown DeepLabV3 backbone 'resnet18'.*efficientnet-b7"):
        models.build_model(make_job(backbone="resnet18"))
    with pytest.raises(ValueError, match=r"unknown encoder weights 'noisy'.*noisy-student"):
        job = make_job(model="Unet", backbone="timm-efficientnet-b0", pretrained=True, encoder_weights="noisy")
        models.build_model(job)


def test_local_weights_round_trip_b7(built, tmp_path):
    # The backbone keeps efficientnet_pytorch's names, so its state_dict is such a file.
    source = built("efficientnet-b7").backbone
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("projection.")}
    state["_fc.weight"] = torch.zeros(1000, 2560)  # the ImageNet classifier, ignored
    path = tmp_path / "b7.pth"
    torch.save(state, path)

    torch.manual_seed(1)
    model = models.build_model(make_job(pretrained=True, weights_path=str(path)))
    for key in ("_conv_stem.weight", "_blocks.54._project_conv.weight", "_bn1.running_var"):
        assert torch.equal(model.backbone.state_dict()[key], state[key])


@pytest.fixture(scope="module")
def b5_weights(tmp_path_factory):
    import timm

    torch.manual_seed(3)
    net = timm.create_model("tf_efficientnet_b5.ns_jft_in1k", pretrained=False)
    path = tmp_path_factory.mktemp("weights") / "b5.pth"
    torch.save(net.state_dict(), path)
    return path, net.state_dict()


def test_local_weights_round_trip_timm(b5_weights):
    path, state = b5_weights
    torch.manual_seed(4)
    model = models.build_model(make_job(backbone="tf_efficientnet_b5_ns", pretrained=True, weights_path=str(path)))
    assert torch.equal(model.backbone.conv_stem.weight, state["conv_stem.weight"])
    assert torch.equal(model.backbone.bn2.running_mean, state["bn2.running_mean"])


def test_local_weights_ignored_without_pretrained(b5_weights):
    path, state = b5_weights
    torch.manual_seed(4)
    model = models.build_model(make_job(backbone="tf_efficientnet_b5_ns", weights_path=str(path)))
    assert not torch.equal(model.backbone.conv_stem.weight, state["conv_stem.weight"])


def test_local_weights_with_wrong_keys(b5_weights, tmp_path):
    _, state = b5_weights
    state = dict(state)
    state["stem.weight"] = state.pop("conv_stem.weight")
    path = tmp_path / "renamed.pth"
    torch.save(state, path)
    job = make_job(backbone="tf_efficientnet_b5_ns", pretrained=True, weights_path=str(path))
    expected = r"missing \(1\): conv_stem\.weight; unexpected \(1\): stem\.weight"
    with pytest.raises(models.WeightsMismatch, match=expected):
        models.build_model(job)


def test_local_weights_checksum_and_missing_file(b5_weights, tmp_path):
    path, _ = b5_weights
    job = make_job(backbone="tf_efficientnet_b5_ns", pretrained=True, weights_path=str(path), weights_sha256="0" * 64)
    with pytest.raises(models.WeightsMismatch, match="sha256"):
        models.build_model(job)
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        models.build_model(job.replace(weights_path=str(tmp_path / "nothing.pth"), weights_sha256=None))


@pytest.fixture
def offline(monkeypatch):
    """Make both libraries' download functions fail, as they do without a network."""
    import segmentation_models_pytorch.encoders as smp_encoders
    import timm.models._builder as timm_builder

    def fail(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(smp_encoders, "hf_hub_download", fail)
    monkeypatch.setattr(timm_builder, "load_state_dict_from_hf", fail)
    monkeypatch.setattr(timm_builder, "load_state_dict_from_url", fail)


@pytest.mark.parametrize(
    ("model", "backbone"),
    [("DeepLabV3", "tf_efficientnet_b5_ns"), ("DeepLabV3", "efficientnet-b7"), ("Unet", "resnet18")],
)
def test_pretrained_without_network(offline, model, backbone):
    job = make_job(model=model, backbone=backbone, pretrained=True, encoder_weights="imagenet")
    message = f"pretrained weights for {backbone} could not be downloaded; pass --weights PATH or --no-pretrained"
    with pytest.raises(models.WeightsUnavailable) as info:
        models.build_model(job)
    assert str(info.value) == message


def test_backbone_weight_url():
    assert models.backbone_weight_url(make_job()) is None
    assert models.backbone_weight_url(make_job(pretrained=True, weights_path="w.pth")) is None
    b7 = models.backbone_weight_url(make_job(pretrained=True))
    assert b7.startswith("https://huggingface.co/smp-hub/efficientnet-b7.imagenet/")
    ns = models.backbone_weight_url(make_job(backbone="tf_efficientnet_b5_ns", pretrained=True))
    assert ns == "https://huggingface.co/timm/tf_efficientnet_b5.ns_jft_in1k"
    unet = models.backbone_weight_url(
        make_job(model="Unet", backbone="timm-efficientnet-b3", pretrained=True, encoder_weights="noisy-student")
    )
    assert "timm-efficientnet-b3.noisy-student" in unet


def test_an_unreachable_hub_switches_to_the_local_cache(monkeypatch):
    from huggingface_hub import constants

    def no_route(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "getaddrinfo", no_route)
    models.prefer_cache_when_offline()
    assert constants.HF_HUB_OFFLINE is True
