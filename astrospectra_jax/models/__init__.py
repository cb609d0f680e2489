"""The model zoo: the paper's eight CNNs and a 1-D CNN for line vectors, in Flax NNX.

>>> from flax import nnx
>>> model = create("resnet18", input_size=28, rngs=nnx.Rngs(params=0, dropout=1))
>>> model.eval()  # batch norm running statistics, no dropout; model.train() to switch back

Image models take (B, S, S, 1) with S = input_size, the line model (B, 721) or (B, 721, 1);
all return float32 logits (B, num_classes), ``model.classify(model.features(x))``:
``features`` is the penultimate representation (B, D), the input of ``model.classifier``, the
final dense layer (layers.Classifier); line vectors come standardised per spectrum from
``training.input_pipeline.preprocess``. ``dtype`` is the compute dtype (e.g. bfloat16),
``param_dtype`` the storage dtype of the parameters. ``kernels`` (models/kernels) chooses the
convolution, max pool and training batch norm: XLA's own, or those faster on XLA:CPU.
``python -m astrospectra_jax.models`` prints every model's input shape, parameter count and
forward GFLOPs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from astrospectra_jax.data.recipe import IMAGE_SIDE, LINE_SIZE
from astrospectra_jax.models.alexnet import AlexNet
from astrospectra_jax.models.conv1d import Conv1D
from astrospectra_jax.models.googlenet import GoogLeNet
from astrospectra_jax.models.kernels import Kernels, resolve
from astrospectra_jax.models.mobilenet import MobileNetV2
from astrospectra_jax.models.resnet import ResNet
from astrospectra_jax.models.simple import LeNet, SimpleCNN1, SimpleCNN2
from astrospectra_jax.models.vgg import VGG16

__all__ = ["MODEL_NAMES", "create", "input_sizes", "is_line_model", "param_count",
           "AlexNet", "Conv1D", "GoogLeNet", "LeNet", "MobileNetV2", "ResNet", "SimpleCNN1",
           "SimpleCNN2", "VGG16"]

TORCHVISION_SIZE = 224

# name -> (constructor, supported input sizes; the first is the default).
_REGISTRY = {
    "simplecnn1": (SimpleCNN1, (IMAGE_SIDE,)),
    "simplecnn2": (SimpleCNN2, (IMAGE_SIDE,)),
    "lenet": (LeNet, (IMAGE_SIDE,)),
    "alexnet": (AlexNet, (IMAGE_SIDE, TORCHVISION_SIZE)),
    "vgg16": (VGG16, (IMAGE_SIDE, TORCHVISION_SIZE)),
    "googlenet": (GoogLeNet, (IMAGE_SIDE, TORCHVISION_SIZE)),
    "resnet18": (ResNet, (IMAGE_SIDE, TORCHVISION_SIZE)),
    "mobilenetv2": (MobileNetV2, (IMAGE_SIDE, TORCHVISION_SIZE)),
    "conv1d": (Conv1D, (LINE_SIZE,)),
}
MODEL_NAMES = tuple(_REGISTRY)
_LINE_MODELS = frozenset({"conv1d"})


def _entry(name: str):
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}") from None


def input_sizes(name: str) -> tuple[int, ...]:
    """Supported input sizes: image side length, or the line-vector length for line models."""
    return _entry(name)[1]


def is_line_model(name: str) -> bool:
    """True for models that take 721-value line vectors rather than images."""
    _entry(name)
    return name in _LINE_MODELS


def create(name: str, *, num_classes: int = 3, input_size: int | None = None,
           kernels: str | Kernels = "auto", dtype=jnp.float32, param_dtype=jnp.float32,
           rngs: nnx.Rngs) -> nnx.Module:
    """Builds model ``name`` for ``input_size`` (default: its first supported size, 28 for
    images and 721 for line vectors). ``rngs`` supplies the "params" and "dropout" streams
    (``nnx.Rngs(0)``'s default stream serves both). ``kernels``: "auto" (the CPU kernels on
    the CPU backend, XLA's elsewhere), "xla", "cpu", or a ``Kernels`` record.

    Initialisation runs eagerly: JAX compiles one small random-number program per parameter
    shape, which on CPU takes seconds for the larger models (GoogLeNet the most)."""
    constructor, sizes = _entry(name)
    if input_size is None:
        input_size = sizes[0]
    if input_size not in sizes:
        raise ValueError(f"model {name!r} does not support input_size={input_size}; "
                         f"supported: {', '.join(map(str, sizes))}")
    kwargs = dict(kernels=resolve(kernels), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if len(sizes) > 1 or name in _LINE_MODELS:
        kwargs["input_size"] = input_size
    return constructor(num_classes, **kwargs)


def param_count(model: nnx.Module) -> int:
    """Number of trainable parameters (nnx.Param leaves; batch-norm statistics excluded).
    Works on abstract models from ``nnx.eval_shape`` too."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))
