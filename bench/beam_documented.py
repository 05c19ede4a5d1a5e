"""The anchor: the same job written the way Beam documents it, for bench/throughput.py.

    TF_USE_LEGACY_KERAS=1 python -m bench.beam_documented --input PATTERN --output DIR \\
        --model_dir SAVED_MODEL --image_size 224 --batch_size 32 --layers res2,res3,res4,res5

MatchFiles -> ReadMatches -> PIL decode + resize + preprocess_input in a Map ->
RunInference(KeyedModelHandler(TFModelHandlerNumpy(SavedModel with dict outputs))) ->
one WriteToParquet of row dicts per layer. Also: --save_model WEIGHTS.h5 writes the
SavedModel (global average pooling of each layer, dict outputs) from a weights file, and
--save_model zero a model of the same outputs that costs next to nothing (each layer's
output is a zero-initialised Dense on the input's global average). --zero_inference runs no
model at all: the handler's inference_fn returns each layer's zeros (Beam's handlers take
an inference_fn), the zero-cost model of bench/feed.py, which runs no TensorFlow graph on
our side either."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # Beam's TF handlers load with tf.keras

import argparse  # noqa: E402
import io  # noqa: E402

import numpy as np  # noqa: E402


def save_zero_model(model_dir: str, image_size: int, layers: list[str]) -> None:
    """Same inputs and dict outputs as save_model's, computed from a 3-number average."""
    import tensorflow as tf

    from schemas import ImageSize, layer_shape

    inputs = tf.keras.Input((image_size, image_size, 3))
    mean = tf.keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = {name: tf.keras.layers.Dense(layer_shape(name, ImageSize(image_size, image_size)).channels,
                                           use_bias=False, kernel_initializer="zeros", name=f"{name}_zero")(mean)
               for name in layers}
    tf.keras.Model(inputs, outputs).save(model_dir)


def save_model(weights_file: str, model_dir: str, image_size: int, layers: list[str]) -> None:
    import tensorflow as tf

    from schemas import canonical_layer

    if weights_file == "zero":
        save_zero_model(model_dir, image_size, layers)
        return

    base = tf.keras.applications.ResNet50(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
    base.load_weights(weights_file)
    outputs = {name: tf.keras.layers.GlobalAveragePooling2D(name=f"{name}_avg")(base.get_layer(canonical_layer(name)).output)
               for name in layers}
    tf.keras.Model(base.input, outputs).save(model_dir)


def zero_inference_fn(layers: list[str], image_size: int):
    """TFModelHandlerNumpy's inference_fn, as its default is written (stack the batch, call
    the model, split the dict per example), with the model call replaced by zeros."""
    from apache_beam.ml.inference import utils

    from schemas import ImageSize, layer_shape

    channels = {name: layer_shape(name, ImageSize(image_size, image_size)).channels for name in layers}

    def inference_fn(model, batch, inference_args, model_id=None):
        n = len(np.stack(batch, axis=0))
        predictions = {name: np.zeros((n, c), np.float32) for name, c in channels.items()}
        return utils._convert_to_result(batch, predictions, model_id)  # pylint: disable=protected-access

    return inference_fn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input")
    parser.add_argument("--output")
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--layers", default="res2,res3,res4,res5")
    parser.add_argument("--save_model", help="weights .h5 to turn into --model_dir, then exit")
    parser.add_argument("--zero_inference", action="store_true",
                        help="an inference_fn returning zeros of each layer's shape: no graph runs")
    args, beam_args = parser.parse_known_args()
    layers = args.layers.split(",")
    if args.save_model:
        save_model(args.save_model, args.model_dir, args.image_size, layers)
        return

    import apache_beam as beam
    import pyarrow as pa
    from apache_beam.io import fileio
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
    from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerNumpy
    from apache_beam.options.pipeline_options import PipelineOptions
    from PIL import Image

    size = args.image_size

    def preprocess(readable):
        from tensorflow.keras.applications.resnet50 import preprocess_input

        image = Image.open(io.BytesIO(readable.read())).convert("RGB").resize((size, size))
        return readable.metadata.path, preprocess_input(np.asarray(image, dtype=np.float32))

    handler_kwargs = {}
    if args.zero_inference:
        handler_kwargs["inference_fn"] = zero_inference_fn(layers, size)
    handler = KeyedModelHandler(TFModelHandlerNumpy(
        args.model_dir, min_batch_size=args.batch_size, max_batch_size=args.batch_size, **handler_kwargs))
    options = PipelineOptions(beam_args or ["--runner", "apache_beam.runners.portability.fn_api_runner.FnApiRunner"])
    with beam.Pipeline(options=options) as p:
        predictions = (
            p | fileio.MatchFiles(args.input) | fileio.ReadMatches()
            | "Preprocess" >> beam.Map(preprocess)
            | RunInference(handler)
        )
        for layer in layers:
            schema = pa.schema([("uri", pa.string()), ("embedding", pa.list_(pa.float32()))])
            _ = (predictions
                 | f"Rows[{layer}]" >> beam.Map(lambda kv, l=layer: {"uri": kv[0], "embedding": np.asarray(kv[1].inference[l]).tolist()})
                 | f"Write[{layer}]" >> beam.io.WriteToParquet(f"{args.output}/{layer}/part", schema, file_name_suffix=".parquet"))


if __name__ == "__main__":
    main()
