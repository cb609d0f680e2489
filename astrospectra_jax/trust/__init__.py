"""Predictions a survey can trust: calibration (``calibration``), outside-the-classes detection
(``ood``, ``outliers``). Pure functions; training and predict call them."""
