"""transforms/write.py: WriteEmbeddings writes the layout and reads back exactly."""

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from apache_beam.testing.util import assert_that

from beam_helpers import check, local_test_pipeline
from schemas import (
    ERRORS_SCHEMA,
    IMAGES_SCHEMA,
    BatchEmbeddings,
    ExtractionConfig,
    FileMeta,
    ImageError,
    ImageInfo,
    embeddings_schema,
    layout,
)
from transforms import WriteEmbeddings


def _batches(config, sizes, rng):
    batches, index = [], 0
    for size in sizes:
        infos = tuple(ImageInfo(FileMeta(f"/img/{index + i}.jpg", f"id{index + i}"), 100 + i, 50, "JPEG") for i in range(size))
        layers = {
            layer: rng.normal(size=(size,) + config.embedding_shape(layer)).astype(config.output_dtype)
            for layer in config.layers
        }
        batches.append(BatchEmbeddings(infos, layers))
        index += size
    return batches


def _read(directory):
    return pq.read_table(directory)


def _write(tmp_path, config, batches, errors):
    with local_test_pipeline() as p:
        written = {
            "embeddings": p | "Emb" >> beam.Create(batches),
            "errors": p | "Err" >> beam.Create(errors),
        } | WriteEmbeddings(str(tmp_path), config)
        for output, files in written.items():
            directory = layout.errors_dir(str(tmp_path)) if output == "errors" else (
                layout.images_dir(str(tmp_path)) if output == "images" else layout.layer_dir(str(tmp_path), output))
            assert_that(
                files,
                check(lambda names, d=directory: len(names) >= 1 and all(
                    n.startswith(d + "/part-") and n.endswith(".parquet") for n in names),
                    f"part files under {directory}"),
                label=f"files[{output}]",
            )


def test_pooled_layers_images_and_errors_round_trip(tmp_path):
    config = ExtractionConfig(layers=("res2", "pool1_pool"), image_size=64, weights="random", output_dtype="float16")
    batches = _batches(config, [3, 2], np.random.default_rng(0))
    errors = [ImageError("/img/bad.jpg", None, "decode", "OSError", "truncated")]
    _write(tmp_path, config, batches, errors)

    images = _read(layout.images_dir(str(tmp_path)))
    assert images.schema.equals(IMAGES_SCHEMA)
    assert sorted(images["image_id"].to_pylist()) == [f"id{i}" for i in range(5)]
    assert pq.read_table(layout.errors_dir(str(tmp_path))).to_pylist() == [e._asdict() for e in errors]

    expected = {info.image_id: batch.layers[layer][row]
                for batch in batches for row, info in enumerate(batch.infos) for layer in ["res2"]}
    for layer in config.layers:
        table = _read(layout.layer_dir(str(tmp_path), layer))
        schema = embeddings_schema(config, layer)
        assert table.schema.field("embedding").type == schema.field("embedding").type
        assert table.schema.metadata == schema.metadata
        assert table.num_rows == 5
        if layer == "res2":
            values = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
            for image_id, row in zip(table["image_id"].to_pylist(), values):
                np.testing.assert_array_equal(row, expected[image_id])


def test_full_feature_maps_are_fixed_shape_tensors(tmp_path):
    config = ExtractionConfig(layers=("res4",), image_size="64x32", pooling="none", weights="random")
    batches = _batches(config, [2], np.random.default_rng(1))
    _write(tmp_path, config, batches, [])
    table = _read(layout.layer_dir(str(tmp_path), "res4"))
    column = table["embedding"].combine_chunks()
    assert isinstance(column.type, pa.FixedShapeTensorType) and column.type.shape == [4, 2, 1024]
    tensor = column.to_numpy_ndarray()
    order = [int(i[2:]) for i in table["image_id"].to_pylist()]
    np.testing.assert_array_equal(tensor, batches[0].layers["res4"][order])


def test_errors_file_exists_even_when_there_are_none(tmp_path):
    config = ExtractionConfig(layers=("res5",), image_size=32, weights="random")
    _write(tmp_path, config, _batches(config, [1], np.random.default_rng(2)), [])
    files = list((tmp_path / layout.ERRORS_DIR).glob("part-*.parquet"))
    assert len(files) == 1
    table = pq.read_table(files[0])
    assert table.num_rows == 0 and table.schema.equals(ERRORS_SCHEMA)


def test_a_wrong_shape_never_reaches_a_file():
    import pytest

    from schemas import ShapeContractError
    from transforms.write import layer_table

    config = ExtractionConfig(layers=("res5",), image_size=32, weights="random")
    batch = _batches(config, [2], np.random.default_rng(3))[0]
    bad = BatchEmbeddings(batch.infos, {"res5": batch.layers["res5"][:, :100]})
    with pytest.raises(ShapeContractError, match="'write'.*expected shape \\(2, 2048"):
        layer_table(bad, "res5", config, embeddings_schema(config, "res5"))
