"""Everything before the model, in the order data flows:

- ``tasks``: the two tasks' names, classes and split sizes (the only place they are written);
- ``spectrum``: the spectrum record the FITS readers return;
- ``lamost``: LAMOST LRS FITS reader (DR1, DR8, DR10 layouts); ``sdss``: SDSS / BOSS spec files;
  ``readers``: either, chosen by file content;
- ``recipe``: the spectrum recipe, 3601-point grid -> 721-value line vector / 28x28 image;
- ``simulator``: LAMOST-like STAR / GALAXY / QSO and F / G / K spectra, offline;
- ``sources``: a folder of FITS files or the simulator -> examples through the recipe;
- ``layout``: the Kaggle folder layout and the line-vector files, written and read;
- ``catalogue``: the datasets by name, their manual downloads, whole splits as numpy;
- ``inputs``: files and folders of any of the above -> a trained model's inputs (predict).
"""
