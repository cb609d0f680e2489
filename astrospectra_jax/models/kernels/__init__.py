"""The operations a model's layers run, chosen when the model is built.

    model = models.create("resnet18", kernels="auto", rngs=nnx.Rngs(0))

``XLA`` is XLA's own operations (``kernels/xla.py``): plain Flax, what every accelerator run
uses. ``CPU`` swaps in the convolution, max pool and training batch norm of the
``kernels/cpu`` package, which compute the same values faster on XLA:CPU. Kernels are pure
functions: the layers own their state (ConvBN updates its batch norm's running averages from
the batch statistics the kernel returns). ``resolve("auto")``
picks ``CPU`` on the CPU backend and ``XLA`` elsewhere; config field ``model.kernels``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax

from astrospectra_jax.models.kernels import cpu, xla

CHOICES = ("auto", "xla", "cpu")


@dataclasses.dataclass(frozen=True)
class Kernels:
    """One implementation of each backend-sensitive operation (static: part of a model's
    graphdef, so models built with different kernels trace and compile separately)."""

    name: str
    # lax.conv_general_dilated's signature: nnx.Conv's ``conv_general_dilated`` argument.
    conv_general_dilated: Callable[..., jax.Array]
    # (x, window, stride, pads) -> max over each window; pads: (low, high) per spatial axis.
    max_pool: Callable[..., jax.Array]
    # Training-mode batch norm: (x, scale, bias, epsilon, activation or None, dtype) ->
    # (activation(normalised x * scale + bias) in dtype, batch mean, batch variance), the
    # statistics over all axes but the last, in float32.
    batch_norm_activation: Callable[..., tuple[jax.Array, jax.Array, jax.Array]]


XLA = Kernels("xla", xla.conv_general_dilated, xla.max_pool, xla.batch_norm_activation)
CPU = Kernels("cpu", cpu.conv_general_dilated, cpu.max_pool, cpu.batch_norm_activation)


def resolve(choice: str | Kernels) -> Kernels:
    """``"xla"`` -> XLA, ``"cpu"`` -> CPU, ``"auto"`` -> CPU on the CPU backend, else XLA."""
    if isinstance(choice, Kernels):
        return choice
    if choice == "auto":
        return CPU if jax.default_backend() == "cpu" else XLA
    if choice == "xla":
        return XLA
    if choice == "cpu":
        return CPU
    raise ValueError(f"unknown kernels {choice!r}; choose one of {', '.join(CHOICES)}")
