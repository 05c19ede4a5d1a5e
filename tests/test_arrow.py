"""schemas/arrow.py: output schemas and Parquet metadata."""

import json

import pyarrow as pa

from schemas import METADATA_KEYS, ExtractionConfig, embeddings_schema


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
    assert json.loads(metadata["image_size"]) == [64, 96] and metadata["pooling"] == "none"
    assert metadata["weights_spec"] == "w.h5" and metadata["keras_layer"] == "pool1_pool"
    assert tuple(metadata) == METADATA_KEYS


def test_metadata_carries_the_embedding_key_and_weights_identity():
    """Files of --weights random --seed 3 and --seed 4 say so; a weights file by its hash."""
    def metadata(config):
        schema = embeddings_schema(config, "res5")
        return {k.decode(): v.decode() for k, v in schema.metadata.items()}

    seed3, seed4 = ExtractionConfig(weights="random", seed=3), ExtractionConfig(weights="random", seed=4)
    assert metadata(seed3)["weights"] == "random:3" and metadata(seed4)["weights"] == "random:4"
    assert metadata(seed3)["embedding_key"] == seed3.embedding_key != seed4.embedding_key
    hashed = ExtractionConfig(weights="w.h5", weights_sha256="ab" * 32)
    assert metadata(hashed)["weights"] == "ab" * 32
    assert metadata(hashed)["embedding_key"] == hashed.embedding_key
    # Every value setting is in the metadata, as the key hashed it.
    for key, value in seed3.value_settings().items():
        stored = metadata(seed3)[key]
        assert (stored if isinstance(value, str) else json.loads(stored)) == value
