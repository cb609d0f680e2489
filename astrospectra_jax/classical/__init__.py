"""The paper's classical scikit-learn grid: ``grid`` (rows, estimators, ``run_grid``,
``run(config, workdir)``), ``isolation`` (killable fits), ``store`` (resumable records),
``tables`` (against the paper: JSON, CSV, Markdown)."""
