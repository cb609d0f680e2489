"""benchmarks/device_check.py's pieces that need no accelerator: the profile summary, the order
of the models section, the partial report."""

from __future__ import annotations

import json

import pytest

from astrospectra_jax import models
from benchmarks import device_check


def _kernel(name, start_us, duration_us, pid=7):
    return {"ph": "X", "pid": pid, "tid": 1, "name": name, "ts": start_us, "dur": duration_us}


def test_trace_summary_splits_the_span_into_compute_memory_and_host_gaps():
    trace = {"traceEvents": [
        {"ph": "M", "pid": 7, "name": "process_name", "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
        _kernel("sm90_xmma_gemm_bf16", 0, 2000),
        _kernel("loop_add_fusion", 1500, 1000),  # overlaps the gemm by 0.5 ms
        _kernel("PjitFunction(train)", 0, 4000, pid=1),  # host: not device time
    ]}
    summary = device_check.summarise_trace(trace, wall_s=0.004)
    assert summary["source"] == "device kernels"
    assert summary["busy_s"] == pytest.approx(0.0025)
    split = summary["split"]
    assert split["host_gap"] == pytest.approx(1 - 0.0025 / 0.004)
    assert split["compute"] == pytest.approx(2 / 3 * 0.0025 / 0.004)
    assert split["memory"] == pytest.approx(1 / 3 * 0.0025 / 0.004)
    assert summary["top_kernels_s"][0][0] == "sm90_xmma_gemm_bf16"


def test_models_section_covers_every_model_targets_first():
    items = device_check.model_items(device_check.FULL)
    assert items[:2] == [("resnet18", 224, "bfloat16"), ("simplecnn2", 28, "bfloat16")]
    expected = {(name, size) for name in models.MODEL_NAMES for size in models.input_sizes(name)}
    for dtype in ("bfloat16", "float32"):
        assert {(n, s) for n, s, d in items if d == dtype} == expected
    assert len(items) == len(set(items)) == 2 * len(expected)
    # every bfloat16 row before any float32 one
    assert [d for _, _, d in items] == ["bfloat16"] * len(expected) + ["float32"] * len(expected)
    smoke = device_check.model_items(device_check.SMOKE)
    assert {n for n, _, d in smoke if d == "float32"} == set(models.MODEL_NAMES)
    assert all(size != 224 for _, size, _ in smoke)


def test_report_is_rewritten_whole_after_each_item(tmp_path):
    report = device_check.Report(tmp_path, {"started": 0.0, "smoke": True, "device_kind": "cpu",
                                            "device_count": 1})
    report.data["skipped"].append("models: vgg16@224 float32")
    report.add("epoch", {"model": "simplecnn2", "input_size": 28, "dtype": "float32",
                         "batch_size": 16, "examples": 64, "wall_s": 1.5,
                         "examples_per_s": 42.0, "compile_s": 3.0})
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["epoch"][0]["wall_s"] == 1.5
    text = (tmp_path / "results.md").read_text()
    assert "| simplecnn2@28 | float32 | 16 | 64 | 1.50 | 42 | 3.0 |" in text
    assert "Skipped (budget): models: vgg16@224 float32" in text
    assert not list(tmp_path.glob(".*.tmp"))
