"""The model alone on one device: images/s per (precision, XLA, batch size) and the per-layer
cosine of each reduced precision against float32. Runs in a process of its own, pinned by
the caller (CUDA_VISIBLE_DEVICES set before TensorFlow loads), so each GPU is measured
alone and the launcher never creates a CUDA context:

    python -m pipeline.devicecheck.model_speed SPEC_JSON   ->  last stdout line "RESULT {...}"

SPEC: {"weights": h5 path, "pixels": .npy path (uint8, (n, H, W, 3), decoded photos),
"precisions": ["none", "bfloat16", ...], "jit": ["off", "on"], "batch_sizes": [...],
"seconds": minimum timed seconds per row, "min_cosine": float}.
Each row: the network (built once per precision) with a forward function for that batch
size and XLA setting (XLA compiles for exactly that batch), one warm-up call
on photos (compilation, and for reduced precision the certificate, which is the same
check a run makes on its first batch), then calls on the same batch until ``seconds`` have
passed (at least 2): images/s = images / seconds of those calls."""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def _batch(pixels: np.ndarray, size: int) -> np.ndarray:
    repeats = -(-size // len(pixels))
    return np.concatenate([pixels] * repeats)[:size]


def measure_row(extractor, pixels: np.ndarray, seconds: float) -> dict:
    """One (precision, XLA, batch) row: images/s, and the certificate for reduced precision."""
    from models.precision import PrecisionCertificateFailed

    config = extractor.config
    batch = _batch(pixels, config.batch_size)
    row = {"precision": extractor.precision, "jit_compile": extractor.jit, "batch_size": config.batch_size,
           "device": extractor.device}
    started = time.perf_counter()
    try:
        extractor(batch)
    except PrecisionCertificateFailed as refused:
        row["refused"] = str(refused)
    row["first_call_s"] = round(time.perf_counter() - started, 3)
    if extractor.certificate is not None:
        row["layers"] = extractor.certificate["layers"]
        row["min_cosine"] = min(values["min"] for values in extractor.certificate["layers"].values())
    if "refused" in row:
        return row
    calls, started = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - started < seconds:
        extractor(batch)
        calls += 1
    elapsed = time.perf_counter() - started
    row["images_per_s"] = round(calls * config.batch_size / elapsed, 2)
    row["timed_calls"] = calls
    return row


def measure(spec: dict) -> dict:
    from models.device import configure_devices
    from models.extractor import LayerExtractor
    from schemas import ExtractionConfig

    pixels = np.load(spec["pixels"])
    height, width = pixels.shape[1:3]
    device, details = configure_devices()
    rows = []
    for precision in spec["precisions"]:
        config = ExtractionConfig(layers=tuple(spec["layers"]), image_size=f"{height}x{width}",
                                  weights=spec["weights"], mixed_precision=precision, min_cosine=spec["min_cosine"])
        network = LayerExtractor(config, spec["weights"])  # built once per precision
        for jit in spec["jit"]:
            for batch_size in spec["batch_sizes"]:
                rows.append(measure_row(network.variant(batch_size, jit), pixels, spec["seconds"]))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress, for the patient
    return {"device": device, "device_details": details, "image_size": [int(height), int(width)],
            "photos": len(pixels), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    spec = json.loads((argv if argv is not None else sys.argv[1:])[0])
    print("RESULT " + json.dumps(measure(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
