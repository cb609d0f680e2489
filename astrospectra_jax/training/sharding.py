"""How arrays lie on the devices: one 1-D mesh ``("data",)`` over every device of every
process; parameters replicated, batches sharded along ``"data"``. An ensemble whose members go
to different devices (``ensemble``) uses a 2-D mesh ``("member", "data")``: each member's
state on its row of devices, its batch sharded along ``"data"`` within the row.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from astrospectra_jax import interrupts

DATA_AXIS = "data"
MEMBER_AXIS = "member"


def make_mesh(members: int = 1) -> Mesh:
    """A 1-D mesh over every device of every process, with the batch axis ``"data"``; with
    ``members > 1``, a 2-D mesh ``("member", "data")`` of ``members`` rows (which must divide
    the device count).

    ``Auto`` axes: shardings propagate from the inputs and from ``with_sharding_constraint``, so
    the models need no sharding annotations of their own.
    """
    if members > 1:
        return jax.make_mesh((members, jax.device_count() // members), (MEMBER_AXIS, DATA_AXIS),
                             axis_types=(jax.sharding.AxisType.Auto,) * 2)
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                         axis_types=(jax.sharding.AxisType.Auto,))


def has_member_axis(mesh: Mesh) -> bool:
    return MEMBER_AXIS in mesh.axis_names


def member_sharded(mesh: Mesh, batch: bool = False) -> NamedSharding:
    """Arrays with a leading member axis: along ``"member"`` on a 2-D mesh (replicated on a 1-D
    one); ``batch``: the next axis (each member's batch) along ``"data"``."""
    member = MEMBER_AXIS if has_member_axis(mesh) else None
    return NamedSharding(mesh, P(member, DATA_AXIS) if batch else P(member))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
    """Sharding of a batch along ``"data"``, after ``leading_axes`` unsharded axes."""
    return NamedSharding(mesh, P(*([None] * leading_axes), DATA_AXIS))


def put_replicated(array: np.ndarray | jax.Array, mesh: Mesh) -> jax.Array:
    """A global array holding ``array`` whole on every device (every process passes the same);
    typed PRNG keys stay typed."""
    return put(array, replicated(mesh))


def put(array: np.ndarray | jax.Array, sharding: NamedSharding) -> jax.Array:
    """A global array laid out as ``sharding`` from ``array`` (every process passes the same
    whole array); typed PRNG keys stay typed."""
    if isinstance(array, jax.Array) and jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(put(jax.random.key_data(array), sharding),
                                        impl=jax.random.key_impl(array))
    array = np.asarray(array)
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


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
    interrupts.reclaim_sigterm()
