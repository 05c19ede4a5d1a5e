"""From measured rows to advice: the fastest settings whose certificate passes, the flags
that ask for them, and how many vCPUs of decoding feed one GPU at that rate."""

from __future__ import annotations

import math

from models.precision import FLOAT32


def flag_precision(precision: str) -> str:
    """The --mixed_precision value of a row's precision ("float32", "mixed_bfloat16")."""
    return FLOAT32 if precision == "float32" else precision.removeprefix("mixed_")


def passes(row: dict, min_cosine: float) -> bool:
    """Timed, and float32 or certified at ``min_cosine``."""
    if "images_per_s" not in row or row.get("refused"):
        return False
    return row["precision"] == "float32" or row.get("min_cosine", -1.0) >= min_cosine


def best_row(rows: list[dict], min_cosine: float) -> dict | None:
    """The fastest row that passes; None when none does."""
    eligible = [row for row in rows if passes(row, min_cosine)]
    return max(eligible, key=lambda row: row["images_per_s"], default=None)


def recommended_flags(row: dict, *, gpus: int) -> list[str]:
    """The resnet50-embed flags that run as ``row`` did; with several GPUs, one model copy
    on each (the default --model_copies on a GPU machine is the number of GPUs)."""
    flags = ["--mixed_precision", flag_precision(row["precision"]),
             "--jit_compile", "on" if row["jit_compile"] else "off", "--batch_size", str(row["batch_size"])]
    if gpus > 1:
        flags += ["--gpus", "auto", "--model_copies", str(gpus)]
    return flags


def vcpus_to_feed(model_images_per_s: float, feed_images_per_cpu_s: float) -> int:
    """vCPUs of decoding that keep a model at ``model_images_per_s`` busy, plus one for the
    model process itself (it stacks, copies to the GPU and writes rows back)."""
    if feed_images_per_cpu_s <= 0:
        raise ValueError("feed rate must be positive")
    return math.ceil(model_images_per_s / feed_images_per_cpu_s) + 1
