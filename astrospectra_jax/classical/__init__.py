"""The paper's classical scikit-learn grid (``grid.run(config, workdir)``)."""
