"""transforms/prepare.py: PrepareBatches gives what AsImageFiles -> DecodeImages ->
ResizeImages -> BatchByShape give, in one step, errors included."""

import apache_beam as beam
import numpy as np
from apache_beam.testing.util import assert_that, equal_to

from beam_helpers import local_test_pipeline
from images import encode, rgb_pattern
from schemas import ExtractionConfig, ImageSize, InputLimits
from transforms import BatchByShape, DecodeImages, PrepareBatches, ResizeImages
from transforms.prepare import _AsImageFileFn
from transforms.resize import reducing_gap


def _inputs():
    good = [(f"img{i}.{kind.lower()}", encode(rgb_pattern(40 + 7 * i, 30 + 5 * i, i), kind))
            for i, kind in enumerate(["PNG", "JPEG", "PNG", "JPEG", "PNG"])]
    bad = [("cut.png", good[0][1][:60]), ("empty.jpg", b""), ("tiny.png", encode(rgb_pattern(2, 2, 9), "PNG")),
           ("text.jpg", b"not an image at all"), (42, b"x")]
    return good, bad


def _rows(batches):
    return sorted((info.uri, info.image_id, info.width, info.height, pixels.tobytes())
                  for batch in batches for info, pixels in zip(batch.infos, batch.pixels))


def test_fused_steps_give_the_step_by_step_pixels_batches_and_errors(tmp_path):
    config = ExtractionConfig(weights="random", image_size=ImageSize(32, 32), batch_size=2, layers=("res5",))
    limits = InputLimits(min_side=4)
    good, bad = _inputs()
    results = {}
    for fused in (True, False):
        with local_test_pipeline() as p:
            elements = p | beam.Create(good + bad)
            if fused:
                prepared = elements | PrepareBatches(config, limits)
                batches, errors = prepared.batches, prepared.errors
            else:
                files = elements | beam.ParDo(_AsImageFileFn(10_000)).with_outputs("errors", main="files")
                decoded = files.files | DecodeImages(max_pixels=limits.max_pixels, min_side=limits.min_side,
                                                     target=config.image_size, resize_mode=config.resize_mode)
                resized = decoded.images | ResizeImages(config.image_size, config.resize_mode, reducing_gap(config))
                batched = resized.images | BatchByShape(config.batch_size, image_shape=config.input_shape)
                batches = batched.batches
                errors = (files.errors, decoded.errors, resized.errors, batched.errors) | beam.Flatten()
            shapes = batches | "Shapes" >> beam.Map(lambda b: (b.pixels.shape[1:], b.pixels.dtype.str, len(b.infos) <= 2))
            assert_that(shapes | beam.Distinct(), equal_to([((32, 32, 3), "|u1", True)]), label="shapes")
            out = str(tmp_path / f"{fused}.npy")
            _ = (batches | beam.combiners.ToList() | beam.Map(lambda bs, path=out: np.save(path, np.array(_rows(bs), dtype=object), allow_pickle=True)))
            assert_that(errors | beam.Map(lambda e: (e.uri, e.stage, e.error_type)),
                        equal_to([("cut.png", "decode", "OSError"), ("empty.jpg", "validate", "EmptyFile"),
                                  ("tiny.png", "validate", "ImageTooSmall"),
                                  ("text.jpg", "decode", "UnidentifiedImageError"),
                                  ("<element of type tuple>", "read", "NotKeyedBytes")]), label="errors")
        results[fused] = np.load(out, allow_pickle=True)
    assert len(results[True]) == len(good)
    assert [tuple(row) for row in results[True]] == [tuple(row) for row in results[False]]
