"""transforms/extract.py: ExtractLayers with injected extractors (fast, no TensorFlow)."""

import apache_beam as beam
import numpy as np
from apache_beam.testing.util import assert_that

from beam_helpers import check, local_test_pipeline
from models.handler import ResNet50Handler
from schemas import ExtractionConfig, FileMeta, ImageBatch, ImageInfo
from transforms import ExtractLayers

CONFIG = ExtractionConfig(layers=("res2", "pool1_pool"), image_size=32, weights="random", batch_size=4)
POISON = 13  # an image filled with this value makes the faulty extractor raise


class _FillValueExtractor:
    """Every output value is the image's fill value: row alignment is visible."""

    def __init__(self, config, extra_channel=False):
        self.config = config
        self.extra = extra_channel

    def __call__(self, pixels):
        fill = pixels[:, 0, 0, 0].astype(np.float32)
        return {
            layer: np.repeat(fill[:, None], self.config.embedding_shape(layer)[0] + self.extra, axis=1)
            for layer in self.config.layers
        }


class _FaultyExtractor(_FillValueExtractor):
    calls = []

    def __call__(self, pixels):
        if (pixels[:, 0, 0, 0] == POISON).any():
            raise RuntimeError(f"injected fault in a batch of {len(pixels)}")
        return super().__call__(pixels)


def fill_value_extractor(config):
    return _FillValueExtractor(config)


def wrong_shape_extractor(config):
    return _FillValueExtractor(config, extra_channel=True)


def faulty_extractor(config):
    return _FaultyExtractor(config)


def _batch(values, shape=(32, 32, 3)):
    infos = tuple(ImageInfo(FileMeta(f"mem://{v}", f"id{v}"), 32, 32, "PNG") for v in values)
    return ImageBatch(infos, np.stack([np.full(shape, v, np.uint8) for v in values]))


def _rows_match_fill_values(outputs):
    seen = []
    for out in outputs:
        for row, info in enumerate(out.infos):
            value = int(info.image_id[2:])
            for layer in CONFIG.layers:
                array = out.layers[layer]
                if array.shape != (len(out.infos),) + CONFIG.embedding_shape(layer):
                    return False
                if not (array[row] == value).all():
                    return False
            seen.append(value)
    return sorted(seen)


def test_outputs_stay_with_their_images():
    with local_test_pipeline() as p:
        out = p | beam.Create([_batch([1, 2, 3, 4]), _batch([5, 6])]) | ExtractLayers(
            ResNet50Handler(CONFIG, model_factory=fill_value_extractor))
        assert_that(out.embeddings, check(lambda xs: _rows_match_fill_values(xs) == [1, 2, 3, 4, 5, 6],
                                          "every image once with its own values"), label="emb")
        assert_that(out.errors, check(lambda xs: xs == [], "no errors"), label="err")


def test_a_failing_image_is_isolated_by_halving():
    with local_test_pipeline() as p:
        out = p | beam.Create([_batch([1, 2, POISON, 4]), _batch([5, 6, 7])]) | ExtractLayers(
            ResNet50Handler(CONFIG, model_factory=faulty_extractor))
        assert_that(out.embeddings, check(lambda xs: _rows_match_fill_values(xs) == [1, 2, 4, 5, 6, 7],
                                          "all but the poisoned image embedded"), label="emb")
        assert_that(
            out.errors,
            check(lambda es: [(e.uri, e.stage, e.error_type) for e in es]
                  == [(f"mem://{POISON}", "extract", "RuntimeError")]
                  and "injected fault in a batch of 1" in es[0].message,
                  "only the poisoned image, failing alone"),
            label="err",
        )


def test_wrong_output_shape_is_a_contract_error_per_image():
    with local_test_pipeline() as p:
        out = p | beam.Create([_batch([1, 2])]) | ExtractLayers(
            ResNet50Handler(CONFIG, model_factory=wrong_shape_extractor))
        assert_that(out.embeddings, check(lambda xs: xs == [], "nothing embedded"), label="emb")
        assert_that(
            out.errors,
            check(lambda es: sorted(e.uri for e in es) == ["mem://1", "mem://2"]
                  and all(e.error_type == "ShapeContractError" and "(2, 257)" in e.message for e in es),
                  "both images rejected naming the shapes"),
            label="err",
        )


def test_batch_of_another_input_size_never_reaches_the_model():
    with local_test_pipeline() as p:
        out = p | beam.Create([_batch([1, 2], shape=(64, 64, 3))]) | ExtractLayers(
            ResNet50Handler(CONFIG, model_factory=faulty_extractor))
        assert_that(
            out.errors,
            check(lambda es: len(es) == 2 and all(
                e.stage == "extract" and "(2, 32, 32, 3" in e.message and "(2, 64, 64, 3" in e.message
                for e in es), "both images rejected by the input contract"),
            label="err",
        )


def real_extractor(config):
    from models.extractor import LayerExtractor

    return LayerExtractor(config)


def _equal_per_image(grouped):
    problems = []
    for image_id, (plain, overlapped) in grouped:
        if len(plain) != 1 or len(overlapped) != 1:
            problems.append((image_id, len(plain), len(overlapped)))
            continue
        for x, y in zip(plain[0], overlapped[0]):
            if not np.allclose(y, x, rtol=1e-5, atol=1e-6 * float(np.abs(x).max())):
                problems.append(image_id)
    return not problems and len(grouped) == 15


def test_overlapped_inference_gives_the_plain_paths_numbers():
    """in_flight_batches=1 (the default: inference on a background thread) == 0 (synchronous),
    both branches in one pipeline, joined per image."""
    config = ExtractionConfig(layers=("res3", "res5"), image_size=32, weights="random", batch_size=3)
    rng = np.random.default_rng(4)
    batches = [ImageBatch(tuple(ImageInfo(FileMeta(f"mem://{b}-{i}", f"id{b}-{i}"), 32, 32, "PNG") for i in range(3)),
                          rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)) for b in range(5)]

    def per_image(embeddings):
        return [(info.image_id, (embeddings.layers["res3"][row], embeddings.layers["res5"][row]))
                for row, info in enumerate(embeddings.infos)]

    with local_test_pipeline() as p:
        source = p | beam.Create(batches)
        branches = {}
        for in_flight in (0, 1):
            out = source | f"Extract{in_flight}" >> ExtractLayers(
                ResNet50Handler(config, model_factory=real_extractor), in_flight_batches=in_flight)
            branches[in_flight] = out.embeddings | f"PerImage{in_flight}" >> beam.FlatMap(per_image)
        joined = (branches[0], branches[1]) | beam.CoGroupByKey()
        assert_that(joined, check(_equal_per_image, "same values per image on both paths"))
