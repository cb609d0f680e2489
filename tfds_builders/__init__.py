"""TFDS builders for AstroSpectra-MNIST; importing this package registers them."""
