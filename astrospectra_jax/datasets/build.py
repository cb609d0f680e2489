"""``tfds build`` without Apache Beam: the same command-line options, the same code.

TFDS 4.9.10's ``tfds`` command imports Apache Beam at start-up even for plain builders
(tensorflow/datasets#5463), and Beam is not a dependency of this project. This runs TFDS's own
``build`` command directly::

    python -m astrospectra_jax.datasets.build astrospectra_jax/datasets/astrospectra_mnist \\
        --config v2_synthetic --data_dir ~/tensorflow_datasets
    python -m astrospectra_jax.datasets.build --imports astrospectra_jax \\
        line_astro_spectra/v2_synthetic

With ``pip install apache-beam``, ``tfds build`` takes the same arguments.
"""

from absl import app
from tensorflow_datasets.scripts.cli import build, cli_utils


def main() -> None:
    parser = cli_utils.make_flags_parser(build.Args, description="Build TFDS datasets.")
    app.run(lambda args: args.execute(), flags_parser=parser)


if __name__ == "__main__":
    main()
