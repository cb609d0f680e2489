"""Kernels that are faster than XLA's own on XLA:CPU: a drop-in ``lax.conv_general_dilated``,
a max pool, and ConvBN's training batch norm + activation (figures: benchmarks/README.md).

XLA:CPU's convolution gradients, grouped and 1x1 convolutions and select-and-scatter are slow,
and the CPU's memory is slow next to its caches, so these paths keep their working sets small:

- Weight gradient: per batch chunk, the transposed output gradient times explicit patches
  (``chunks.weight_gradient``).
- Stride-1 3x3 convolutions on maps of 14x14 and up, in training: Winograd's F(2x2, 3x3) for
  the forward pass and the input gradient (``winograd``); otherwise XLA's own.
- 1x1 convolutions: a matrix product over channels (``conv._pointwise_conv``).
- Output maps of at most 7x7: one channel product per kernel tap over the outputs it reaches
  (``tapwise.valid_taps_conv``), skipping the products with padding.
- Single-channel stems: a sum over the kernel's taps (``tapwise.single_channel_conv``).
- Input gradients of convolutions with few input channels: col2im
  (``chunks.col2im_input_gradient``).
- Depthwise convolutions: a sum of shifted, scaled inputs with its own gradient
  (``tapwise.depthwise_conv``).
- Max pool: XLA's forward, the gradient of a running maximum over the window (``pool``).
- Training batch norm + activation with a gradient that stores only its input
  (``batch_norm``).

Other convolutions (dilation, batch grouping, grouped but not depthwise, non-channels-last
layouts) go to ``lax.conv_general_dilated`` unchanged. Every path is correct on any backend;
``kernels.resolve("auto")`` picks them on CPU only.
"""

from astrospectra_jax.models.kernels.cpu.batch_norm import batch_norm_activation
from astrospectra_jax.models.kernels.cpu.chunks import weight_gradient
from astrospectra_jax.models.kernels.cpu.conv import conv_general_dilated
from astrospectra_jax.models.kernels.cpu.pool import max_pool

__all__ = ["batch_norm_activation", "conv_general_dilated", "max_pool", "weight_gradient"]
