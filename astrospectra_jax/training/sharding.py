"""How arrays lie on the devices: one 1-D mesh ``("data",)`` over every device of every
process; parameters replicated, batches sharded along ``"data"``.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh() -> Mesh:
    """A 1-D mesh over every device of every process, with the batch axis ``"data"``.

    ``Auto`` axes: shardings propagate from the inputs and from ``with_sharding_constraint``, so
    the models need no sharding annotations of their own.
    """
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                         axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
    """Sharding of a batch along ``"data"``, after ``leading_axes`` unsharded axes."""
    return NamedSharding(mesh, P(*([None] * leading_axes), DATA_AXIS))


def put_replicated(array: np.ndarray | jax.Array, mesh: Mesh) -> jax.Array:
    """A global array holding ``array`` whole on every device (every process passes the same);
    typed PRNG keys stay typed."""
    if isinstance(array, jax.Array) and jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(put_replicated(jax.random.key_data(array), mesh),
                                        impl=jax.random.key_impl(array))
    array = np.asarray(array)
    return jax.make_array_from_callback(array.shape, replicated(mesh), lambda index: array[index])


def global_batch(local: np.ndarray, mesh: Mesh, leading_axes: int = 0) -> jax.Array:
    """Assemble a global array, sharded on the batch axis, from each process's rows."""
    return jax.make_array_from_process_local_data(batch_sharded(mesh, leading_axes), local)


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           cpu_devices: int | None = None) -> None:
    """Join a multi-process run (``jax.distributed.initialize``); call before any other JAX use.

    With no arguments JAX detects the cluster (Cloud TPU, SLURM, Open MPI, Kubernetes) and
    reads ``JAX_COORDINATOR_ADDRESS``; elsewhere, e.g. several processes on one machine, give
    the coordinator's ``host:port`` (process 0 listens there), the number of processes and this
    process's id. CPU devices exchange data through gloo (TCP), so a CPU-only run works too;
    ``cpu_devices`` sets how many CPU devices each process has.
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if cpu_devices:
        jax.config.update("jax_num_cpu_devices", cpu_devices)
    given = {"coordinator_address": coordinator_address, "num_processes": num_processes,
             "process_id": process_id}
    jax.distributed.initialize(**{k: v for k, v in given.items() if v is not None})
