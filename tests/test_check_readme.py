"""benchmarks/check_readme.py's parsing and comparisons; no training, no pytest run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import check_readme

ROOT = Path(__file__).resolve().parents[1]

README = """# x
```bash
python3 -m venv .venv && . .venv/bin/activate && pip install -e . && python main.py --config=configs/quickstart.py --workdir=runs/quickstart
```
```bash
python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && python -m pytest -n 2 -q tests astrospectra_jax
```
It ends with test accuracy **0.947** (test loss 0.1844) on `astrospectra_mnist/v1_synthetic`.
Tests: **346 passed, 40 skipped** (a fresh clone without ../shared).
"""


def test_the_projects_readme_states_every_figure_the_check_needs():
    claims = check_readme.parse_readme((ROOT / "README.md").read_text())
    assert claims.test_command == check_readme.ci_test_command(ROOT / ".ci" / "run")
    assert float(claims.accuracy) > 0 and claims.passed > 0


def test_parse_readme_reads_the_figures_as_written():
    claims = check_readme.parse_readme(README)
    assert (claims.accuracy, claims.test_loss) == ("0.947", "0.1844")
    assert (claims.passed, claims.skipped) == (346, 40)
    assert claims.test_command == "python -m pytest -n 2 -q tests astrospectra_jax"


@pytest.mark.parametrize("drop", ["test accuracy **", "Tests: **", "configs/quickstart.py"])
def test_parse_readme_names_what_is_missing(drop):
    with pytest.raises(check_readme.ReadmeError):
        check_readme.parse_readme(README.replace(drop, "something else"))


def test_results_compare_at_the_readmes_decimals():
    claims = check_readme.parse_readme(README)
    assert all(c.ok for c in check_readme.compare_results(
        claims, {"accuracy": 0.9474, "test_loss": 0.18437}))
    checks = check_readme.compare_results(claims, {"accuracy": 0.946, "test_loss": 0.1844})
    assert [c.ok for c in checks] == [False, True]
    assert "MISMATCH" in checks[0].line()


def test_pytest_outputs_are_parsed():
    assert check_readme.parse_collected("...\n386 tests collected in 20.1s\n") == 386
    assert check_readme.parse_collected("384/386 tests collected (2 deselected) in 3s") == 384
    assert check_readme.parse_collected("tests/test_a.py: 3\ntests/test_b.py: 28\n") == 31
    assert check_readme.parse_collected("ERROR: file or directory not found") is None
    summary = check_readme.parse_summary("....\n346 passed, 40 skipped, 3 warnings in 623.4s\n")
    assert summary["passed"] == 346 and summary["skipped"] == 40
    claims = check_readme.parse_readme(README)
    assert all(c.ok for c in check_readme.compare_summary(claims, summary))
    assert check_readme.compare_collected(claims, 386).ok
    assert not check_readme.compare_collected(claims, 390).ok
    one_failed = check_readme.parse_summary("1 failed, 345 passed, 40 skipped in 600s")
    failed = check_readme.compare_summary(claims, one_failed)
    assert not all(c.ok for c in failed)


def test_main_with_results_skips_the_training(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"accuracy": 0.947, "test_loss": 0.1844}))
    args = ["--readme", str(readme), "--ci", str(tmp_path / "none"), "--results", str(results),
            "--skip-tests"]
    assert check_readme.main(args) == 0
    results.write_text(json.dumps({"accuracy": 0.909, "test_loss": 0.1844}))
    assert check_readme.main(args) == 1
    assert "MISMATCH  test accuracy" in capsys.readouterr().out
    readme.write_text("# nothing here\n")
    assert check_readme.main(args) == 2
