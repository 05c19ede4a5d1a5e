"""transforms/batch.py: BatchByShape."""

import collections

import apache_beam as beam
import numpy as np
from apache_beam.testing.util import assert_that

from beam_helpers import check, local_test_pipeline
from schemas import FileMeta, ImageInfo, ResizedImage
from transforms import BatchByShape


def _image(index, shape, dtype=np.uint8):
    info = ImageInfo(FileMeta(f"mem://{index}", f"id{index}"), shape[1], shape[0], "PNG")
    return ResizedImage(info, np.full(shape, index % 256, dtype))


def _batches_are_uniform_and_complete(batches, expected_ids, batch_size):
    seen = collections.Counter()
    for batch in batches:
        if not 1 <= len(batch.infos) <= batch_size:
            return False
        if batch.pixels.shape[0] != len(batch.infos):
            return False
        for info, pixels in zip(batch.infos, batch.pixels):
            if pixels.shape != batch.pixels.shape[1:] or pixels[0, 0, 0] != int(info.image_id[2:]) % 256:
                return False
            seen[info.image_id] += 1
    return seen == collections.Counter(expected_ids)


def test_mixed_shapes_never_share_a_batch():
    images = [_image(i, (8, 8, 3) if i % 3 else (4, 6, 3)) for i in range(20)]
    with local_test_pipeline() as p:
        batched = p | beam.Create(images) | BatchByShape(4)
        assert_that(
            batched.batches,
            check(lambda bs: _batches_are_uniform_and_complete(bs, [i.info.image_id for i in images], 4),
                  "every image once, uniform batches of at most 4"),
            label="batches",
        )
        assert_that(batched.errors, check(lambda xs: xs == [], "no errors"), label="errors")


def test_wrong_shape_or_dtype_goes_to_errors_when_shape_is_fixed():
    good = [_image(i, (8, 8, 3)) for i in range(5)]
    bad = [_image(90, (8, 9, 3)), _image(91, (8, 8, 4)), _image(92, (8, 8, 3), np.float32)]
    with local_test_pipeline() as p:
        batched = p | beam.Create(good + bad) | BatchByShape(2, image_shape=(8, 8, 3))
        assert_that(
            batched.batches,
            check(lambda bs: _batches_are_uniform_and_complete(bs, [i.info.image_id for i in good], 2),
                  "only the good images, in batches of at most 2"),
            label="batches",
        )
        assert_that(
            batched.errors,
            check(lambda es: sorted(e.uri for e in es) == ["mem://90", "mem://91", "mem://92"]
                  and all(e.stage == "batch" and e.error_type == "ShapeContractError"
                          and "(8, 8, 3, uint8)" in e.message for e in es),
                  "three shape contract errors at stage batch"),
            label="errors",
        )
