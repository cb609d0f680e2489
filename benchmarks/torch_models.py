"""PyTorch reference implementations of the project's models, layer for layer.

The throughput benchmark times these against the Flax models of ``astrospectra_jax.models``; it
asserts that both have the same number of trainable parameters, which catches a layer that
differs in width, bias or kernel size. Layouts are torch's own (NCHW, eager); the 224 variants
are torchvision's architectures with one input channel, the 28 variants the project's native
ones (see the docstrings in ``astrospectra_jax/models``). Initialisation is torch's default:
these models are timed, never trained to accuracy.

    from benchmarks.torch_models import create
    model = create("resnet18", input_size=28)  # input (B, 1, 28, 28)
"""

from __future__ import annotations

import torch
from torch import nn

NATIVE_SIZE = 28
TORCHVISION_SIZE = 224
LINE_SIZE = 721


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int | None = None, *,
            groups: int = 1, activation: type[nn.Module] | None = nn.ReLU, eps: float = 1e-5,
            ndim: int = 2) -> nn.Sequential:
    """Bias-free conv, batch norm, optional activation (the project's ``layers.ConvBN``)."""
    conv_cls, bn_cls = (nn.Conv2d, nn.BatchNorm2d) if ndim == 2 else (nn.Conv1d, nn.BatchNorm1d)
    padding = (kernel - 1) // 2 if padding is None else padding
    modules = [conv_cls(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False),
               bn_cls(out_ch, eps=eps)]
    if activation is not None:
        modules.append(activation())
    return nn.Sequential(*modules)


# ----------------------------------------------------------------------------- 28x28 only

class SimpleCNN1(nn.Module):
    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(7 * 7 * 64, 128), nn.ReLU(),
                                        nn.Linear(128, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class SimpleCNN2(nn.Module):
    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(1, 64, 3), conv_bn(64, 64, 3), nn.MaxPool2d(2), nn.Dropout(0.25),
            conv_bn(64, 128, 3), conv_bn(128, 128, 3), nn.MaxPool2d(2), nn.Dropout(0.25))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(7 * 7 * 128, 256, bias=False), nn.BatchNorm1d(256), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(256, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class LeNet(nn.Module):
    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
            nn.Linear(5 * 5 * 16, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(),
            nn.Linear(84, num_classes))

    def forward(self, x):
        return self.net(x)


# ----------------------------------------------------------------------------- 28 and 224

class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 3, input_size: int = TORCHVISION_SIZE):
        super().__init__()
        native = input_size != TORCHVISION_SIZE
        stem = ([nn.Conv2d(1, 64, 3, 1, 1), nn.ReLU()] if native else
                [nn.Conv2d(1, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2)])
        self.features = nn.Sequential(
            *stem,
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(nn.Module):
    def __init__(self, num_classes: int = 3, input_size: int = TORCHVISION_SIZE):
        super().__init__()
        native = input_size != TORCHVISION_SIZE
        layers, in_ch = [], 1
        for block in VGG16_BLOCKS:
            for out_ch in block:
                layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU()]
                in_ch = out_ch
            layers.append(nn.MaxPool2d(2, ceil_mode=native))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.Identity() if native else nn.AdaptiveAvgPool2d((7, 7))
        flat, hidden = (512, 512) if native else (512 * 7 * 7, 4096)
        self.classifier = nn.Sequential(
            nn.Linear(flat, hidden), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


INCEPTION3 = ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64))
INCEPTION4 = ((192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64),
              (128, 128, 256, 24, 64, 64), (112, 144, 288, 32, 64, 64),
              (256, 160, 320, 32, 128, 128))
INCEPTION5 = ((256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128))
GOOGLENET_EPS = 1e-3


class Inception(nn.Module):
    def __init__(self, in_ch, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        kw = dict(eps=GOOGLENET_EPS)
        self.branch1 = conv_bn(in_ch, ch1x1, 1, **kw)
        self.branch2 = nn.Sequential(conv_bn(in_ch, ch3x3red, 1, **kw),
                                     conv_bn(ch3x3red, ch3x3, 3, **kw))
        self.branch3 = nn.Sequential(conv_bn(in_ch, ch5x5red, 1, **kw),
                                     conv_bn(ch5x5red, ch5x5, 3, **kw))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True),
                                     conv_bn(in_ch, pool_proj, 1, **kw))
        self.out_ch = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 3, input_size: int = TORCHVISION_SIZE):
        super().__init__()
        native = input_size != TORCHVISION_SIZE
        kw = dict(eps=GOOGLENET_EPS)
        if native:
            stem = [conv_bn(1, 64, 3, 1, **kw), conv_bn(64, 64, 1, **kw),
                    conv_bn(64, 192, 3, **kw)]
        else:
            stem = [conv_bn(1, 64, 7, 2, **kw), nn.MaxPool2d(3, 2, ceil_mode=True),
                    conv_bn(64, 64, 1, **kw), conv_bn(64, 192, 3, **kw),
                    nn.MaxPool2d(3, 2, ceil_mode=True)]
        stages, in_ch = [], 192
        for config, pool in ((INCEPTION3, nn.MaxPool2d(3, 2, ceil_mode=True)),
                             (INCEPTION4, nn.MaxPool2d(2, 2, ceil_mode=True)),
                             (INCEPTION5, None)):
            for channels in config:
                stages.append(Inception(in_ch, *channels))
                in_ch = stages[-1].out_ch
            if pool is not None:
                stages.append(pool)
        self.features = nn.Sequential(*stem, *stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                  nn.Linear(in_ch, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = conv_bn(in_ch, out_ch, 3, stride)
        self.conv2 = conv_bn(out_ch, out_ch, 3, activation=None)
        self.downsample = (conv_bn(in_ch, out_ch, 1, stride, activation=None)
                           if stride != 1 or in_ch != out_ch else None)
        self.relu = nn.ReLU()

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + shortcut)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 3, input_size: int = TORCHVISION_SIZE):
        super().__init__()
        native = input_size != TORCHVISION_SIZE
        stem = ([conv_bn(1, 64, 3, 1)] if native else
                [conv_bn(1, 64, 7, 2), nn.MaxPool2d(3, 2, 1)])
        blocks, in_ch = [], 64
        for stage in range(4):
            out_ch = 64 * 2**stage
            for index in range(2):
                blocks.append(BasicBlock(in_ch, out_ch, 2 if stage > 0 and index == 0 else 1))
                in_ch = out_ch
        self.features = nn.Sequential(*stem, *blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(in_ch, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


MOBILENETV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_ch * expansion
        convs = [conv_bn(in_ch, hidden, 1, activation=nn.ReLU6)] if expansion != 1 else []
        convs += [conv_bn(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6),
                  conv_bn(hidden, out_ch, 1, activation=None)]
        self.convs = nn.Sequential(*convs)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x):
        y = self.convs(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 3, input_size: int = TORCHVISION_SIZE):
        super().__init__()
        native = input_size != TORCHVISION_SIZE
        layers, in_ch = [conv_bn(1, 32, 3, 1 if native else 2, activation=nn.ReLU6)], 32
        for expansion, out_ch, repeats, stride in MOBILENETV2_SETTINGS:
            if native and out_ch == 24:
                stride = 1
            for index in range(repeats):
                layers.append(InvertedResidual(in_ch, out_ch, stride if index == 0 else 1,
                                               expansion))
                in_ch = out_ch
        layers.append(conv_bn(in_ch, 1280, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                  nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


# ----------------------------------------------------------------------------- line vectors

CONV1D_BLOCKS = ((32, 1), (64, 2), (128, 2), (128, 2))


class ResBlock1D(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = conv_bn(in_ch, out_ch, 3, stride, ndim=1)
        self.conv2 = conv_bn(out_ch, out_ch, 3, activation=None, ndim=1)
        self.shortcut = (conv_bn(in_ch, out_ch, 1, stride, activation=None, ndim=1)
                         if stride != 1 or in_ch != out_ch else None)

    def forward(self, x):
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return torch.relu(self.conv2(self.conv1(x)) + shortcut)


class Conv1D(nn.Module):
    """Input (B, 721) or (B, 1, 721); per-spectrum standardisation first, as the Flax model."""

    def __init__(self, num_classes: int = 3, input_size: int = LINE_SIZE):
        super().__init__()
        blocks, in_ch = [conv_bn(1, 32, 7, 2, ndim=1)], 32
        for out_ch, stride in CONV1D_BLOCKS:
            blocks.append(ResBlock1D(in_ch, out_ch, stride))
            in_ch = out_ch
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Dropout(0.2),
                                  nn.Linear(in_ch, num_classes))

    def forward(self, x):
        if x.ndim == 2:
            x = x[:, None, :]
        x = x.float()
        std = x.std(dim=-1, keepdim=True, unbiased=False)
        x = (x - x.mean(dim=-1, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))
        return self.head(self.features(x))


# ----------------------------------------------------------------------------- registry

_REGISTRY = {
    "simplecnn1": (SimpleCNN1, False), "simplecnn2": (SimpleCNN2, False), "lenet": (LeNet, False),
    "alexnet": (AlexNet, True), "vgg16": (VGG16, True), "googlenet": (GoogLeNet, True),
    "resnet18": (ResNet18, True), "mobilenetv2": (MobileNetV2, True), "conv1d": (Conv1D, False),
}
MODEL_NAMES = tuple(_REGISTRY)


def create(name: str, *, num_classes: int = 3, input_size: int = NATIVE_SIZE) -> nn.Module:
    """The torch counterpart of ``astrospectra_jax.models.create(name, input_size=...)``."""
    try:
        cls, sized = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}") from None
    return cls(num_classes, input_size) if sized else cls(num_classes)


def param_count(model: nn.Module) -> int:
    """Trainable parameters (batch-norm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
