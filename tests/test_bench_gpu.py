"""``make bench-gpu`` is ready for the day a GPU is lent: the same code runs here on the CPU (fp32,
a tiny model, a tiny suite standing in for the quickstart), which checks its plumbing — it measures
nothing about GPUs."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_suite_file


@pytest.mark.slow
def test_the_accelerator_benchmark_runs_unchanged_on_the_cpu(tiny_models, toy_task, shared_data, tmp_path,
                                                              monkeypatch):
    from benchmarks import gpu

    monkeypatch.setattr(gpu, "QUICKSTART", tiny_suite_file(tmp_path, tiny_models, toy_task))
    section = gpu.run(model=str(tiny_models["llama"]), device=torch.device("cpu"), dtype=torch.float32,
                      suite_out=tmp_path / "suite")
    paths = ["step shared", "step per example", "eval shared", "eval per example"]
    assert [row[:2] for row in section.rows] == [[f"batch {b}, R {r}", p] for b, r in gpu.SETTINGS for p in paths]
    for b, r in gpu.SETTINGS:
        assert all(rate > 0 for rate in section.data[f"batch {b}, R {r}"].values())
    assert all(float(row[3].removesuffix(" %")) > 0 for row in section.rows)
    assert section.data["matmul_peak_flops"] > 0 and "CPU (plumbing check only)" in section.title
    assert section.data["quickstart_minutes"] > 0 and (tmp_path / "suite" / "results.jsonl").is_file()
    assert gpu.device_and_dtype() == ((torch.device("cuda"), torch.bfloat16) if torch.cuda.is_available()
                                      and torch.cuda.is_bf16_supported() else (torch.device("cpu"), torch.float32))
