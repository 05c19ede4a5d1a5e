"""The ceiling for bench/throughput.py: the same multi-layer model's float32 forward pass on
pre-decoded, pre-resized batches, three ways. Prints one JSON line of images/s.

    python -m bench.ceiling --weights W.h5 --image_size 224 --batch_size 32 --layers ... """

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def images_per_second(call, batch: np.ndarray, repeats: int) -> float:
    call(batch)
    call(batch)  # warm-up: tracing, compilation, allocator
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call(batch)
        times.append(time.perf_counter() - started)
    return len(batch) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", required=True)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--layers", default="res2,res3,res4,res5")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mixed_precision", default="none")
    parser.add_argument("--only", help="measure only this variant (tf.function, predict_on_batch, xla)")
    args = parser.parse_args()

    from models.tfload import tensorflow

    tf = tensorflow()  # as the pipeline loads it: the same host allocator (models/tfload.py)
    import tf_keras
    from tf_keras.applications.resnet50 import preprocess_input

    from models.extractor import LayerExtractor, _build_with_policy
    from schemas import ExtractionConfig

    config = ExtractionConfig(layers=tuple(args.layers.split(",")), image_size=args.image_size,
                              batch_size=args.batch_size, weights=args.weights,
                              mixed_precision=args.mixed_precision)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (args.batch_size,) + config.input_shape, dtype=np.uint8)
    results = {}

    extractor = LayerExtractor(config)  # ours: preprocess + forward + pool in one tf.function
    results["tf.function"] = images_per_second(extractor, pixels, args.repeats)
    if args.only == "tf.function":
        print(json.dumps(results))
        return

    base = _build_with_policy(config, None)
    pooled = {name: tf_keras.layers.GlobalAveragePooling2D()(base.get_layer(keras).output)
              for name, keras in config.keras_layers.items()}
    keras_model = tf_keras.Model(base.input, pooled)
    floats = preprocess_input(pixels.astype(np.float32))
    results["predict_on_batch"] = images_per_second(keras_model.predict_on_batch, floats, args.repeats)

    xla = tf.function(lambda x: keras_model(x, training=False), jit_compile=True)
    floats_tensor = tf.constant(floats)
    results["xla"] = images_per_second(lambda x: {k: v.numpy() for k, v in xla(x).items()},
                                       floats_tensor, args.repeats)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
