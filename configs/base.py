"""Shared defaults of the deep-learning experiments; each configs/<experiment>.py overrides a few.

Any field can be overridden on the command line, e.g. ``--config.batch_size=256``,
``--config.model.dtype=bfloat16``, ``--config.data_dir=/data/tfds``.
"""

import ml_collections
from ml_collections import config_dict


def get_base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.kind = "deep"  # "classical" configs go to astrospectra_jax.classical.grid instead

    # TFDS name: astrospectra_mnist/{v1,v2}[_synthetic[_mini]], line_astro_spectra/...
    config.dataset = "astrospectra_mnist/v2"
    config.data_dir = config_dict.placeholder(str)  # None: the TFDS default (~/tensorflow_datasets)

    config.model = ml_collections.ConfigDict()
    config.model.name = "simplecnn2"
    config.model.input_size = 28  # image side (28 native, 224 upsampled on device) or 721 (line)
    config.model.dtype = "float32"  # compute dtype; "bfloat16" on GPU/TPU. Params stay float32.
    # Convolution, max pool and training batch norm: "xla" (XLA's own), "cpu" (faster on
    # XLA:CPU, models/kernels/cpu.py) or "auto" (cpu on the CPU backend, xla elsewhere).
    config.model.kernels = "auto"

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"  # adam | adamw | sgd
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 0.0  # decoupled for adamw, L2 in the gradient otherwise
    config.optimizer.momentum = 0.9  # sgd only
    config.schedule = "constant"  # constant | cosine | warmup_cosine
    config.warmup_epochs = 1.0  # warmup_cosine only

    config.num_epochs = 20
    config.max_steps = 0  # > 0: stop after this many steps (short throughput runs)
    config.batch_size = 128  # global, split over all devices
    config.label_smoothing = 0.0
    config.augment = ml_collections.ConfigDict()
    config.augment.max_shift = 0  # > 0: random shift along wavelength by up to this many bins
    config.seed = 0
    # > 1: train this many models in one program, member k from seed + k (the same model a
    # single run with that seed trains); results.json adds each member and their ensemble.
    config.ensemble_size = 1
    # How members lie: auto | map (lax.map, one after another) | vmap | mesh (members on
    # different devices). auto: mesh when the device count is a multiple of ensemble_size, else
    # map on CPU and vmap on GPU/TPU (astrospectra_jax/training/ensemble.py).
    config.ensemble_axis = "auto"

    config.input_pipeline = "device"  # device: splits live on the accelerators | tfdata: streamed
    config.shuffle_buffer = 50_000  # tfdata only
    config.steps_per_call = 0  # steps per compiled call (lax.scan); 0: auto, 1 on CPU, 20 else
    config.checkpoint_every_steps = 1000
    config.keep_checkpoints = 3
    config.eval_every_epochs = 1  # 0: evaluate only at the end
    config.log_every_steps = 100  # metrics.jsonl / TensorBoard, and clu's steps/s and ETA
    config.profile_steps = 0  # > 0: a profiler trace (TensorBoard) of this many steps in workdir
    # After training, also evaluate on these ("name1,name2": registered datasets of the same
    # classes, or folders of converted / FITS data); results.json gets a section for each.
    config.eval_datasets = ""
    # Trust (docs/trusting-predictions.md): this share of every training class is held out
    # (seeded) to fit the temperature and the out-of-class threshold; 0 turns both off.
    config.validation_fraction = 0.1
    config.ood_method = "auto"  # auto | mahalanobis | outlier_exposure | max_softmax | energy
    config.outlier_exposure = ml_collections.ConfigDict()
    # > 0 (v2 only): simulated A/M stars, galaxies and quasars, this many per training
    # example, join the training data as an extra "other" class (the model gets K+1 outputs).
    config.outlier_exposure.fraction = 0.0
    config.distributed = False  # True: jax.distributed.initialize() (multi-host TPU/GPU)
    return config
