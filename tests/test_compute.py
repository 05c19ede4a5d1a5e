"""pipeline/compute.py: the launcher resolves --mixed_precision auto, the default batch size
and model copies from the driver's listing (local) or the Dataflow accelerator type, so the
embedding key always names one precision."""

from __future__ import annotations

import pytest

from pipeline.plan import UsageError, parse_args
from test_gpus import SMI_TWO, fake_nvidia_smi

DATAFLOW = ["--runner", "DataflowRunner", "--project", "p", "--region", "r", "--temp_location", "gs://b/tmp",
            "--input", "gs://b/images/*", "--output", "gs://b/out"]
L4_WORKERS = ["--dataflow_service_options", "worker_accelerator=type:nvidia-l4;count:2;install-nvidia-driver"]


@pytest.fixture
def no_driver(monkeypatch, tmp_path):
    from models.gpus import list_gpus

    monkeypatch.setattr("pipeline.compute.list_gpus", lambda: list_gpus(
        nvidia_smi=str(tmp_path / "absent"), proc_root=str(tmp_path / "no-proc")))


@pytest.fixture
def two_gpus(monkeypatch, tmp_path):
    """nvidia-smi on PATH lists a T4 and an A100."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_nvidia_smi(bin_dir, SMI_TWO)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_dataflow_gpu_workers_resolve_auto_from_the_accelerator_type():
    parsed = parse_args(DATAFLOW + L4_WORKERS + ["--mixed_precision", "auto"])
    assert parsed.config.mixed_precision == "bfloat16"
    assert parsed.config.batch_size == 64 and parsed.options.model_copies == 2
    record = parsed.compute.record()
    assert "nvidia-l4, count:2" in record["device"] and record["mixed_precision_reason"].endswith("bfloat16")
    explicit = parse_args(DATAFLOW + L4_WORKERS + ["--mixed_precision", "bfloat16"])
    assert explicit.config.embedding_key == parsed.config.embedding_key  # auto is its resolution


def test_right_fitting_resolves_from_the_hint():
    parsed = parse_args(DATAFLOW + ["--accelerator_hint", "type:nvidia-tesla-t4;count:1;install-nvidia-driver",
                                    "--mixed_precision", "auto"])
    assert parsed.config.mixed_precision == "float16" and parsed.config.batch_size == 64
    assert parsed.options.model_copies == 1


def test_dataflow_cpu_workers_keep_float32_and_32_and_a_model_per_process():
    parsed = parse_args(DATAFLOW + ["--mixed_precision", "auto"])
    assert (parsed.config.mixed_precision, parsed.config.batch_size, parsed.options.model_copies) == ("none", 32, None)
    assert "AMX" in parsed.compute.record()["mixed_precision_reason"]


def test_given_values_win():
    parsed = parse_args(DATAFLOW + L4_WORKERS + ["--batch_size", "8", "--model_copies", "1"])
    assert (parsed.config.batch_size, parsed.options.model_copies, parsed.config.mixed_precision) == (8, 1, "none")
    assert parsed.compute.record()["batch_size_reason"] == "given"


def test_a_local_machine_with_two_gpus(two_gpus, tmp_path):
    local = ["--input", str(tmp_path), "--output", str(tmp_path / "out")]
    parsed = parse_args(local + ["--mixed_precision", "auto"])
    # a T4 (7.5) and an A100 (8.0): float16 is what both run natively
    assert parsed.config.mixed_precision == "float16" and parsed.options.model_copies == 2
    assert parsed.config.batch_size == 64
    assert parsed.compute.record()["listing"]["source"] == "nvidia-smi"
    only_a100 = parse_args(local + ["--mixed_precision", "auto", "--gpus", "1"])
    assert only_a100.config.mixed_precision == "bfloat16" and only_a100.options.model_copies == 1
    cpu = parse_args(local + ["--gpus", "none"])
    assert cpu.options.model_copies is None and cpu.config.batch_size == 32


def test_a_local_machine_without_gpus_uses_the_cpus_flags(no_driver, tmp_path):
    from models.precision import cpu_flags

    parsed = parse_args(["--input", str(tmp_path), "--output", str(tmp_path / "out"), "--mixed_precision", "auto"])
    bf16 = bool({"avx512_bf16", "amx_bf16"} & (cpu_flags() or set()))
    assert parsed.config.mixed_precision == ("bfloat16" if bf16 else "none")
    assert parsed.options.model_copies is None and parsed.config.batch_size == 32


@pytest.mark.parametrize("argv, message", [
    (["--gpus", "zero"], "--gpus 'zero'"), (["--batch_size", "0"], "--batch_size must be at least 1"),
    (["--min_cosine", "2"], "--min_cosine must be between")])
def test_bad_compute_options_are_usage_errors(tmp_path, argv, message):
    with pytest.raises(UsageError, match=message):
        parse_args(["--input", str(tmp_path), "--output", str(tmp_path / "out")] + argv)
