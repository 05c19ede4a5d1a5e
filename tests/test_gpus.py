"""models/gpus.py: the driver's GPU listing, read from nvidia-smi's CSV, /proc, or a Dataflow
accelerator type, without CUDA."""

from __future__ import annotations

import os
import stat

import pytest

from models.gpus import (
    accelerator_gpus,
    accelerator_setting,
    capability_from_name,
    list_gpus,
    parse_accelerator,
    parse_nvidia_smi,
    parse_proc_information,
)

SMI_TWO = """\
0, GPU-8932f937-d72c-4106-c12f-20bd9faed9f6, Tesla T4, 7.5, 15360 MiB
1, GPU-60f2c95a-c564-a078-2a14-b4ff488806ca, NVIDIA A100-SXM4-40GB, 8.0, 40960 MiB
"""


def fake_nvidia_smi(folder, output: str, *, fail_on: str | None = None) -> str:
    """An executable that prints ``output`` for --query-gpu (or fails when its query holds
    ``fail_on``, as an old driver does for compute_cap)."""
    path = folder / "nvidia-smi"
    check = f'case "$1" in *{fail_on}*) echo "Field \\"{fail_on}\\" is not a valid field to query." >&2; exit 2;; esac\n' if fail_on else ""
    path.write_text(f"#!/bin/sh\n{check}cat <<'EOF'\n{output}EOF\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_nvidia_smi_rows_become_gpus_in_index_order():
    gpus = parse_nvidia_smi("WARNING: infoROM is corrupted at gpu 0000:00:04.0\n"
                            + "\n".join(reversed(SMI_TWO.splitlines())))
    assert [g.index for g in gpus] == [0, 1]
    t4, a100 = gpus
    assert (t4.name, t4.uuid, t4.compute_capability, t4.memory_mib) == (
        "Tesla T4", "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6", (7, 5), 15360)
    assert a100.capability_text == "8.0" and a100.record()["memory_mib"] == 40960


def test_a_listing_without_compute_capability_takes_it_from_the_name():
    (gpu,) = parse_nvidia_smi("0, GPU-aaaa, NVIDIA L4, [N/A], [N/A]\n")
    assert gpu.compute_capability == (8, 9) and gpu.memory_mib is None


@pytest.mark.parametrize("name, capability", [
    ("Tesla T4", (7, 5)), ("NVIDIA A100-SXM4-80GB", (8, 0)), ("NVIDIA A10G", (8, 6)),
    ("NVIDIA L4", (8, 9)), ("NVIDIA L40S", (8, 9)), ("NVIDIA H100 80GB HBM3", (9, 0)),
    ("Tesla V100-SXM2-16GB", (7, 0)), ("Tesla P4", (6, 1)), ("Tesla P100-PCIE-16GB", (6, 0)),
    ("Tesla K80", (3, 7)), ("Matrox G200", None),
])
def test_compute_capability_from_the_model_name(name, capability):
    assert capability_from_name(name) == capability


def test_proc_information_is_ordered_by_bus_as_nvidia_smi_numbers_gpus():
    later = "Model: \t\t NVIDIA L4\nIRQ: 40\nGPU UUID: \t GPU-bbbb\nBus Location: \t 0000:00:05.0\nDevice Minor: \t 1\n"
    first = "Model: \t\t Tesla T4\nGPU UUID: \t GPU-aaaa\nBus Location: \t 0000:00:04.0\nDevice Minor: \t 0\n"
    gpus = parse_proc_information([later, first, "garbage without a model"])
    assert [(g.index, g.name, g.uuid, g.compute_capability) for g in gpus] == [
        (0, "Tesla T4", "GPU-aaaa", (7, 5)), (1, "NVIDIA L4", "GPU-bbbb", (8, 9))]


def test_list_gpus_reads_nvidia_smi(tmp_path):
    listing = list_gpus(nvidia_smi=fake_nvidia_smi(tmp_path, SMI_TWO), proc_root=str(tmp_path / "none"))
    assert listing.source == "nvidia-smi" and len(listing.gpus) == 2


def test_an_old_driver_is_asked_again_without_compute_cap(tmp_path):
    smi = fake_nvidia_smi(tmp_path, "0, GPU-aaaa, Tesla T4, 15360 MiB\n", fail_on="compute_cap")
    listing = list_gpus(nvidia_smi=smi, proc_root=str(tmp_path / "none"))
    assert listing.source == "nvidia-smi"
    assert listing.gpus[0].compute_capability == (7, 5) and listing.gpus[0].memory_mib == 15360
    assert "not a valid field" in listing.tried[0]


def test_without_nvidia_smi_the_proc_files_are_read(tmp_path):
    card = tmp_path / "proc" / "0000:00:04.0"
    card.mkdir(parents=True)
    (card / "information").write_text("Model: Tesla T4\nGPU UUID: GPU-aaaa\nBus Location: 0000:00:04.0\n")
    listing = list_gpus(nvidia_smi=str(tmp_path / "absent"), proc_root=str(tmp_path / "proc"))
    assert listing.source == "/proc/driver/nvidia" and listing.gpus[0].uuid == "GPU-aaaa"
    assert listing.tried == (f"{tmp_path / 'absent'}: not found",)


def test_a_machine_without_a_driver_says_what_was_tried(tmp_path):
    listing = list_gpus(nvidia_smi=str(tmp_path / "absent"), proc_root=str(tmp_path / "proc"))
    assert listing.gpus == () and listing.source == "none"
    assert listing.tried == (f"{tmp_path / 'absent'}: not found",
                             f"{tmp_path / 'proc'}: absent (no NVIDIA driver loaded)")
    assert listing.record()["gpus"] == []


def test_the_suite_never_creates_a_cuda_context_to_list_gpus():
    """The listing is a subprocess and files: TensorFlow is not imported by it."""
    import subprocess
    import sys

    code = "import sys; from models.gpus import list_gpus; list_gpus(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "False"


def test_dataflow_accelerators_are_parsed_from_the_service_option_or_a_hint():
    settings = ["enable_prime", "worker_accelerator=type:nvidia-l4;count:2;install-nvidia-driver"]
    assert parse_accelerator(accelerator_setting(settings)) == ("nvidia-l4", 2)
    assert parse_accelerator("type:nvidia-tesla-t4;install-nvidia-driver") == ("nvidia-tesla-t4", 1)
    assert parse_accelerator("count:2") is None and parse_accelerator(None) is None
    assert accelerator_setting(["enable_prime"]) is None
    gpus = accelerator_gpus("nvidia-tesla-a100", 2)
    assert [(g.index, g.compute_capability) for g in gpus] == [(0, (8, 0)), (1, (8, 0))]
    (unknown,) = accelerator_gpus("nvidia-future-x1", 1)
    assert unknown.name == "nvidia-future-x1" and unknown.compute_capability is None
