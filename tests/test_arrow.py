"""schemas/arrow.py: output schemas and Parquet metadata."""

import json

import pyarrow as pa

from schemas import ExtractionConfig, embeddings_schema


def test_pooled_embedding_is_fixed_size_list():
    schema = embeddings_schema(ExtractionConfig(weights="random"), "res4")
    assert schema.field("embedding").type == pa.list_(pa.float32(), 1024)
    assert schema.names == ["image_id", "uri", "embedding"]


def test_full_map_is_fixed_shape_tensor_with_metadata():
    config = ExtractionConfig(weights="w.h5", pooling="none", image_size="64x96", output_dtype="float16")
    schema = embeddings_schema(config, "pool1_pool")
    tensor_type = schema.field("embedding").type
    assert isinstance(tensor_type, pa.FixedShapeTensorType)
    assert tensor_type.shape == [16, 24, 64] and tensor_type.value_type == pa.float16()
    metadata = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    assert json.loads(metadata["shape"]) == [16, 24, 64]
    assert metadata["image_size"] == "64x96" and metadata["pooling"] == "none"
    assert metadata["weights"] == "w.h5" and metadata["keras_layer"] == "pool1_pool"
