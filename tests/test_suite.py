"""The suite runner: the plan it makes, and real tiny runs that it skips, resumes and survives."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import pytest

from astrospectra_jax import suite

MINI = "astrospectra_mnist/v2_synthetic_mini"
# A few steps of LeNet: the run's cost is its start-up (imports, data, compilation).
TINY = ["num_epochs=1", "max_steps=4", "batch_size=32", "steps_per_call=2",
        "log_every_steps=2", "eval_every_epochs=0"]


def _flags(command) -> dict[str, str]:
    return dict(a.split("=", 1) for a in command if a.startswith("--"))


def test_dry_run_lists_every_command(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert suite.main(["--dataset", "astrospectra_mnist/v2_synthetic", "--models", "all",
                       "--seeds", "3", "--runs", str(runs), "--input-size", "paper",
                       "--set", "num_epochs=2", "--set", "batch_size=64", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()  # by default: one ensemble run per model
    assert len(lines) == 8 and all(line.startswith("run ") for line in lines)
    assert all("--config.seed=0 " in line and "--config.ensemble_size=3" in line
               and "/seeds0-2 " in line for line in lines)
    assert suite.main(["--dataset", "astrospectra_mnist/v2_synthetic", "--models", "all",
                       "--seeds", "3", "--runs", str(runs), "--separate", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8 * 3 and not any("ensemble_size" in line for line in lines)
    assert not runs.exists()  # a dry run writes nothing
    assert suite.seed_groups([0, 1, 2, 5, 7, 8], ensemble=True) == [(0, 3), (5, 1), (7, 2)]
    assert suite.seed_groups([0, 1], ensemble=False) == [(0, 1), (1, 1)]

    planned = suite.plan(["astrospectra_mnist/v2_synthetic"], "all", [0, 1, 2], runs,
                         input_size_choice="paper", overrides=["num_epochs=2"])
    sizes = {r.model: r.input_size for r in planned}
    assert sizes["resnet18"] == 224 and sizes["vgg16"] == 224 and sizes["lenet"] == 28
    native = suite.plan(["astrospectra_mnist/v2_synthetic"], "resnet18,lenet", [0], runs,
                        input_size_choice="native")
    assert [(r.model, r.input_size) for r in native] == [("resnet18", 28), ("lenet", 28)]
    # By default each run takes the size its config file sets.
    for run in suite.plan(["astrospectra_mnist/v1_synthetic"], "all", [0], runs):
        assert run.input_size == suite.config_input_size(run.config)
        assert run.config.name == f"v1_{run.model}.py"
    resnet = next(r for r in planned if r.model == "resnet18" and r.seed == 2)
    flags = _flags(resnet.command)
    assert resnet.workdir == runs.absolute() / "astrospectra_mnist_v2_synthetic" / "resnet18_224" / "seed2"
    assert flags["--config"] == str(suite.DEFAULT_CONFIGS / "v2_resnet18.py")
    assert flags["--workdir"] == str(resnet.workdir)
    assert flags["--config.dataset"] == "astrospectra_mnist/v2_synthetic"
    assert flags["--config.seed"] == "2" and flags["--config.model.input_size"] == "224"
    assert flags["--config.num_epochs"] == "2"
    assert Path(resnet.command[1]) == suite.DEFAULT_MAIN

    line = suite.plan(["line_astro_spectra/v1_synthetic"], "all", [0], runs)
    assert [(r.model, r.input_size, r.config.name) for r in line] == [
        ("conv1d", 721, "line_v1_conv1d.py")]


def test_configs_and_main_come_from_the_folders_given(tmp_path, capsys):
    """--configs: its base.py is the one the configs import (no sys.path edit); --main: the
    script each run starts, from its own folder."""
    configs = tmp_path / "my_configs"
    configs.mkdir()
    (configs / "base.py").write_text(
        "import ml_collections\n\n"
        "def get_base_config():\n"
        "    config = ml_collections.ConfigDict()\n"
        "    config.model = ml_collections.ConfigDict({'name': '', 'input_size': 28})\n"
        "    return config\n")
    (configs / "v2_resnet18.py").write_text(
        "from configs.base import get_base_config\n\n"
        "def get_config():\n"
        "    config = get_base_config()\n"
        "    config.model.name = 'resnet18'\n"
        "    return config\n")
    main = tmp_path / "elsewhere" / "main.py"
    main.parent.mkdir()
    main.write_text("")
    path_before, configs_before = list(sys.path), sys.modules.get("configs")

    run, = suite.plan(["astrospectra_mnist/v2_synthetic"], "resnet18", [0], tmp_path / "runs",
                      config_dir=configs, main=main)
    assert run.input_size == 28  # the default checkout's v2_resnet18.py says 224
    assert run.command[1] == str(main) and run.cwd == main.parent
    assert _flags(run.command)["--config"] == str(configs / "v2_resnet18.py")
    assert sys.path == path_before and sys.modules.get("configs") is configs_before

    argv = ["--dataset", MINI, "--models", "lenet", "--runs", str(tmp_path), "--dry-run"]
    with pytest.raises(SystemExit):
        suite.main(argv + ["--main", str(tmp_path / "nowhere.py")])
    assert "nowhere.py: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        suite.main(argv + ["--configs", str(configs)])  # no v2_lenet.py there
    assert "v2_lenet.py does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--models", "lenet,nonet"], "unknown model 'nonet'"),
    (["--models", "conv1d"], "does not take image data"),
    (["--set", "dataset=fashion_mnist"], "use --dataset"),
    (["--set", "num_epochs"], "expected key=value"),
    (["--seeds", "two"], "--seeds 'two'"),
    (["--dataset", "astrospectra_mnist/v9"], "unknown 'astrospectra_mnist/v9'"),
])
def test_bad_options_are_named(tmp_path, capsys, args, message):
    argv = ["--dataset", MINI, "--runs", str(tmp_path), "--dry-run"]
    if "--dataset" in args:
        argv = argv[2:]
    with pytest.raises(SystemExit) as exit_info:
        suite.main(argv + args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("tfds"))


def test_real_runs_are_skipped_when_finished_and_resumed_when_not(tmp_path, data_dir, capsys):
    runs = tmp_path / "runs"
    first = suite.plan([MINI], "lenet", [0], runs, overrides=TINY, data_dir=data_dir)
    summary = suite.execute(first, progress=False)
    assert (summary["done"], summary["failed"], summary["skipped"]) == (1, 0, 0), \
        suite.format_summary(summary)
    seed0 = first[0].workdir
    results = json.loads((seed0 / "results.json").read_text())
    assert results["model"] == "lenet" and results["seed"] == 0 and results["steps"] == 4
    assert results["dataset"] == MINI and results["synthetic"] is True
    assert suite.read_record(seed0)["status"] == "ok"

    # seed1: a finished run (a copy); seed0: started but unfinished (its results removed).
    seed1 = seed0.parent / "seed1"
    shutil.copytree(seed0, seed1)
    finished_before = (seed1 / "results.json").stat().st_mtime_ns
    (seed0 / "results.json").unlink()
    assert first[0].state() == "partial"

    argv = ["--dataset", MINI, "--models", "lenet", "--seeds", "2", "--separate", "--runs",
            str(runs),
            "--data-dir", data_dir, "--no-progress"] + [a for s in TINY for a in ("--set", s)]
    assert suite.main(argv + ["--dry-run"]) == 0
    dry = capsys.readouterr().out.splitlines()
    assert dry[0].startswith("resume ") and "--config.seed=0" in dry[0]
    assert dry[1].startswith("skip ") and "--config.seed=1" in dry[1]

    assert suite.main(argv) == 0
    out = capsys.readouterr().out
    assert "1 done, 1 skipped" in out and "0 failed" in out
    assert (seed1 / "results.json").stat().st_mtime_ns == finished_before
    resumed = json.loads((seed0 / "results.json").read_text())
    assert resumed["resumed_from_step"] == 4  # restored from the checkpoint, not retrained
    assert resumed["accuracy"] == results["accuracy"]
    record = suite.read_record(seed0)
    assert record["status"] == "ok" and record["resumed"] is True
    assert (seed0 / "train.log").read_text().count("suite: ") == 2  # both attempts logged


def _with_command(run: suite.PlannedRun, *command: str) -> suite.PlannedRun:
    return dataclasses.replace(run, command=(sys.executable, *command))


def test_a_failed_run_is_recorded_and_the_suite_goes_on(tmp_path, data_dir, capsys):
    runs = tmp_path / "runs"
    planned = suite.plan([MINI], "lenet", [0, 1, 2], runs, overrides=TINY, data_dir=data_dir)
    # seed0 fails outright, seed1 exits 0 without results, seed2 succeeds.
    writes_results = ("import json, pathlib; pathlib.Path(r'{}').write_text(json.dumps("
                      "{{'accuracy': 0.5}}))".format(planned[2].workdir / "results.json"))
    commands = [_with_command(planned[0], "-c", "import sys; print('out of memory'); sys.exit(3)"),
                _with_command(planned[1], "-c", "pass"),
                _with_command(planned[2], "-c", writes_results)]
    summary = suite.execute(commands, progress=False)
    assert (summary["done"], summary["failed"], summary["remaining"]) == (1, 2, 0)
    records = [suite.read_record(r.workdir) for r in commands]
    assert [r["status"] for r in records] == ["failed", "failed", "ok"]
    assert records[0]["returncode"] == 3 and records[0]["error"] == "exit status 3"
    assert "out of memory" in Path(records[0]["log"]).read_text()
    assert "no results.json" in records[1]["error"]
    text = suite.format_summary(summary)
    assert "2 failed" in text and str(commands[0].log) in text

    # From the command line, with main.py rejecting the config: exit status 1, the error in
    # the run's log; the earlier failure is tried again, the finished run is skipped.
    argv = ["--dataset", MINI, "--models", "lenet", "--seeds", "1,2", "--separate", "--runs",
            str(runs),
            "--data-dir", data_dir, "--no-progress", "--set", "optimizer.name=adagrad"]
    assert suite.main(argv) == 1
    out = capsys.readouterr().out
    assert "0 done, 1 skipped" in out and "1 failed" in out
    assert "config.optimizer.name='adagrad'" in planned[1].log.read_text()
    assert suite.read_record(planned[1].workdir)["status"] == "failed"
