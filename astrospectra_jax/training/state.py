"""The training state: one typed pytree, and how it starts.

``TrainState(step, params, model_state, opt_state)``: the step, the model's parameters, its
other variables (batch-norm statistics, dropout RNG state) and the optimizer state. Every other
source of randomness is a pure function of (seed, step), so this state alone resumes a run
exactly. ``params``, ``model_state`` and ``opt_state`` are whole subtrees, never flattened; an
ensemble (``ensemble``) gives them a leading member axis, member ``k`` initialised from seed
``config.seed + k``, and shares ``step``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx, struct

from astrospectra_jax import models
from astrospectra_jax.data import catalogue
from astrospectra_jax.models import kernels
from astrospectra_jax.training import ensemble, sharding, trust_fit
from astrospectra_jax.training.configuration import choice, non_negative

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# Independent random streams derived from the seed.
PARAMS_STREAM, DROPOUT_STREAM, DATA_STREAM, AUGMENT_STREAM = range(4)


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any  # nnx.State of the nnx.Param variables
    model_state: Any  # nnx.State of every other variable (batch statistics, RNG counts)
    opt_state: Any  # the optax state

    def model(self) -> dict[str, Any]:
        """What the model needs to predict: ``{"params", "model_state"}`` (no optimizer)."""
        return {"params": self.params, "model_state": self.model_state}


def build_model(config: ml_collections.ConfigDict, spec: catalogue.DatasetSpec,
                seed: int | None = None) -> nnx.Module:
    """The configured model with its initial parameters (from ``seed``, default
    ``config.seed``)."""
    key = jax.random.key(non_negative("seed", config.seed if seed is None else seed))
    rngs = nnx.Rngs(params=jax.random.fold_in(key, PARAMS_STREAM),
                    dropout=jax.random.fold_in(key, DROPOUT_STREAM))
    return models.create(config.model.name,  # + "other" under outlier exposure
                         num_classes=spec.num_classes + trust_fit.extra_outputs(config),
                         input_size=config.model.input_size,
                         kernels=choice("model.kernels", config.model.kernels, kernels.CHOICES),
                         dtype=DTYPES[choice("model.dtype", config.model.dtype, DTYPES)],
                         param_dtype=jnp.float32, rngs=rngs)


def init_model(config, spec, mesh) -> tuple[nnx.GraphDef, dict[str, Any]]:
    """(graphdef, ``{"params", "model_state"}``) replicated over the mesh: what predict needs.
    An ensemble's items have a leading member axis (sharded along a "member" mesh axis)."""
    if ensemble.size(config) == 1:
        graphdef, params, model_state = nnx.split(build_model(config, spec), nnx.Param, ...)
        model = {"params": params, "model_state": model_state}
        return graphdef, jax.tree.map(lambda x: sharding.put_replicated(x, mesh), model)
    graphdef, model = _member_models(config, spec)
    on_members = sharding.member_sharded(mesh)
    return graphdef, jax.tree.map(lambda x: sharding.put(x, on_members), model)


def _member_models(config, spec) -> tuple[nnx.GraphDef, dict[str, Any]]:
    """(graphdef, the members' ``{"params", "model_state"}`` stacked), on the default device."""
    graphdef, models_ = None, []
    for seed in ensemble.seeds(config):
        graphdef, params, model_state = nnx.split(build_model(config, spec, seed), nnx.Param, ...)
        models_.append({"params": params, "model_state": model_state})
    return graphdef, ensemble.stack(models_)


def init_state(config, spec, tx: optax.GradientTransformation, mesh
               ) -> tuple[nnx.GraphDef, TrainState]:
    """(graphdef, state): the model's structure, and the initial state replicated over the mesh.

    Initialised eagerly (op by op, a fraction of a second) rather than compiled, which took
    longer than the training chunk's own compilation for small models; every process computes
    the same values from the seed.
    """
    graphdef, model = init_model(config, spec, mesh)
    if ensemble.size(config) == 1:
        opt_state = jax.tree.map(lambda x: sharding.put_replicated(x, mesh),
                                 tx.init(model["params"]))
    else:  # each member's own optimizer state (its step counts too)
        on_members = sharding.member_sharded(mesh)
        opt_state = jax.tree.map(lambda x: sharding.put(x, on_members),
                                 jax.vmap(tx.init)(model["params"]))
    step = sharding.put_replicated(jnp.zeros((), jnp.int32), mesh)
    return graphdef, TrainState(step, model["params"], model["model_state"], opt_state)
