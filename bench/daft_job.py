"""The feed job written the way Daft's documentation shows it, for bench/per_core.py:
list the files, download their bytes, decode to RGB, resize to 224x224, a batch function
(``daft.func.batch``, one call per batch of 32) that returns zeros for the four layers (res2..res5: 256, 512, 1024, 2048 float32 per image),
write Parquet. Runs in a virtualenv of its own (Daft is never a project dependency):

    python -m venv /tmp/daftvenv && /tmp/daftvenv/bin/pip install daft==0.7.26 numpy
    /tmp/daftvenv/bin/python bench/daft_job.py 'DIR/*.jpg' OUT_DIR

Runs on Daft's native (local) runner. What differs from our pipeline, so that a
comparison says it: Daft stretches to 224x224 (we center-crop), applies no EXIF
orientation, hashes nothing, checks no format or size, and has no per-image error rows
(``on_error="null"`` leaves a null). Prints the wall and CPU seconds of the job (after
imports) as JSON."""

from __future__ import annotations

import json
import resource
import sys
import time

LAYERS = {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}
SIZE = 224
BATCH = 32


def main(pattern: str, output: str) -> None:
    import daft
    import daft.functions as F
    import numpy as np
    from daft import col

    import pyarrow as pa

    layers = daft.DataType.struct({name: daft.DataType.embedding(daft.DataType.float32(), width)
                                   for name, width in LAYERS.items()})

    @daft.func.batch(return_dtype=layers, unnest=True, batch_size=BATCH)
    def zero_model(images):
        n = len(images)
        return pa.StructArray.from_arrays(
            [pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(n * width, np.float32)), width)
             for width in LAYERS.values()], names=list(LAYERS))

    started, cpu = time.perf_counter(), time.process_time()
    df = daft.from_glob_path(pattern)
    df = df.with_column("image", F.decode_image(F.download(col("path")), on_error="null", mode="RGB"))
    df = df.with_column("image", F.resize(col("image"), SIZE, SIZE))
    df = df.select(col("path"), zero_model(col("image")))
    df.write_parquet(output)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu,
                      "cpu_rusage": usage.ru_utime + usage.ru_stime}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
