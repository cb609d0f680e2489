"""The astrospectra_mnist TFDS builder (28x28 images)."""
