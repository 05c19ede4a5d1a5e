"""resnet50-device on this machine (no GPU): the CPU path, end to end in small settings."""

import json
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_cpu_path_measures_every_row_says_no_gpu_and_writes_its_json(tmp_path):
    out = tmp_path / "device.json"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.devicecheck.cli", "--json", str(out), "--image_size", "32",
         "--batch_sizes", "2", "--layers", "res2,res5", "--seconds", "0", "--kinds", "web", "--feed_counts", "web=2:6",
         "--gpus", "none", "--min_cosine", "-1"],  # at 32x32 bfloat16 may miss 0.99: time every row
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no GPU found; looked with:" in done.stderr
    report = json.loads(out.read_text())
    (device,) = report["devices"]
    assert device["kind"] == "cpu" and device["gpu"] is None
    rows = device["model"]["rows"]
    precisions = {row["precision"] for row in rows}
    assert "float32" in precisions
    # each precision x XLA off/on, every one timed (bfloat16 only where the CPU has it)
    assert len(rows) == len(precisions) * 2
    assert {(row["jit_compile"], row["batch_size"]) for row in rows} == {(False, 2), (True, 2)}
    for row in rows:
        assert row["images_per_s"] > 0 and row["timed_calls"] >= 2
        if row["precision"] != "float32":  # certified on the first batch, each layer
            assert set(row["layers"]) == {"res2", "res5"} and -1 <= row["min_cosine"] <= 1
    assert device["best"] in rows and device["flags"][:1] == ["--mixed_precision"]
    feed = report["feed"]["web"]  # camera photos are the same code at 3000x2000 (and slower)
    assert list(report["feed"]) == ["web"] and feed["photos"] == 6
    assert feed["loop_images_per_cpu_s"] > 0
    # 2 against 6 photos is within a busy machine's noise: the job's rate is either a rate its
    # own loop bounds, or "not measured", said so in one line (never a made-up number)
    from pipeline.devicecheck.feed import PLAUSIBLE_OVER_LOOP
    piped = feed["pipeline_images_per_cpu_s"]
    if piped is None:
        assert feed["pipeline_keeps"] is None and "pipeline not measured for web photos" in done.stdout
    else:
        assert 0 < piped <= feed["loop_images_per_cpu_s"] * PLAUSIBLE_OVER_LOOP
        assert abs(feed["pipeline_keeps"] - piped / feed["loop_images_per_cpu_s"]) < 0.01
    assert "recommended: resnet50-embed --mixed_precision" in done.stdout
    assert "decode feed per vCPU" in done.stdout


def test_an_unwritable_json_path_stops_it_at_once(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipeline.devicecheck.cli", "--json", str(tmp_path / "no" / "x.json")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"resnet50-device: --json {tmp_path / 'no' / 'x.json'}: folder "
                                                f"{tmp_path / 'no'} does not exist"]


def test_a_feed_rate_the_noise_made_is_shown_as_not_measured_and_vcpus_fall_back_to_the_loop():
    """The job cannot outrun its own decode+resize loop: a marginal rate far above it (a few
    photos' CPU lost in a run's start-up) is no rate, and neither is a run that cost less."""
    from pipeline.devicecheck.cli import render
    from pipeline.devicecheck.feed import PLAUSIBLE_OVER_LOOP, judged_rate, sizing_rate

    assert judged_rate(50.9, 1e10) is None and judged_rate(50.9, None) is None
    assert judged_rate(200.0, 150.0) == 150.0 and judged_rate(200.0, 200.0 * PLAUSIBLE_OVER_LOOP) is not None
    noisy = {"photos": 12, "mean_kb": 1194.4, "loop_images_per_cpu_s": 50.9,
             "pipeline_images_per_cpu_s": None, "pipeline_keeps": None}
    fine = {"photos": 160, "mean_kb": 40.1, "loop_images_per_cpu_s": 218.4,
            "pipeline_images_per_cpu_s": 180.0, "pipeline_keeps": 0.824}
    assert sizing_rate(noisy) == 50.9 and sizing_rate(fine) == 180.0
    text = render({"devices": [], "feed": {"web": fine, "camera": noisy}})
    camera = next(line for line in text.splitlines() if line.startswith("camera"))
    assert camera.split()[-2:] == ["-", "-"] and "e+" not in text and "0000000" not in text
    assert "pipeline not measured for camera photos" in text and "sized by the loop's rate" in text
