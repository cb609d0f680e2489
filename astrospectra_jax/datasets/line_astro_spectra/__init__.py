"""The line_astro_spectra TFDS builder (721-value line vectors)."""
