"""Results records in, tables and figures out: ``python -m astrospectra_jax.report``."""
