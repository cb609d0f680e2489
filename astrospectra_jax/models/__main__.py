"""Prints every model at every supported input size: input shape, parameters, forward GFLOPs.

    python -m astrospectra_jax.models

FLOPs come from XLA's cost analysis of the compiled eval-mode forward pass for a batch of one
(multiply and add counted separately), of models built with XLA's own kernels (the CPU
kernels' loops would be counted once). Models are built abstractly (nnx.eval_shape), so no
weights are allocated; compiling VGG16 at 224 dominates the runtime.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from astrospectra_jax.models import MODEL_NAMES, create, input_sizes, is_line_model, param_count


def input_shape(name: str, size: int, batch: int = 1) -> tuple[int, ...]:
    return (batch, size) if is_line_model(name) else (batch, size, size, 1)


def forward_flops(model: nnx.Module, shape: tuple[int, ...]) -> float:
    """FLOPs of one eval-mode forward pass over a float32 batch of ``shape``, per XLA (a
    model built with ``kernels="xla"``: XLA counts a loop's body once)."""
    model.eval()
    graphdef, state = nnx.split(model)

    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    lowered = jax.jit(forward).lower(state, jax.ShapeDtypeStruct(shape, jnp.float32))
    costs = lowered.compile().cost_analysis()
    # A dict in current JAX; older releases returned a list of per-computation dicts.
    costs = costs if isinstance(costs, dict) else costs[0]
    return float(costs["flops"])


def main() -> None:
    rows = [("model", "input shape", "params", "GFLOPs/example")]
    for name in MODEL_NAMES:
        for size in input_sizes(name):
            model = nnx.eval_shape(lambda: create(name, input_size=size, kernels="xla",
                                                  rngs=nnx.Rngs(0)))
            shape = input_shape(name, size)
            rows.append((name, "x".join(map(str, shape[1:])), f"{param_count(model):,}",
                         f"{forward_flops(model, shape) / shape[0] / 1e9:.3f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  "
              f"{row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}")


if __name__ == "__main__":
    main()
