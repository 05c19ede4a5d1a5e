"""manifest.json: what a run did, written last so that its presence marks a complete output."""

from __future__ import annotations

import importlib.metadata
import json
import platform

from apache_beam.io.filesystems import FileSystems

from pipeline.root.atomic import write_atomically
from schemas import ExtractionConfig, alias_of, canonical_layer, layout

PACKAGE_NAME = "resnet50-embeddings"
MANIFEST_VERSION = 1
_LIBRARIES = ("tensorflow", "tf-keras", "apache-beam", "pyarrow", "numpy", "pillow")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version(), PACKAGE_NAME: _version(PACKAGE_NAME)}
    versions.update({name: _version(name) for name in _LIBRARIES})
    return versions


def layers_record(config: ExtractionConfig) -> list[dict]:
    """Each stored layer with its Keras name, feature-map shape, stored shape and dims."""
    records = []
    for name in config.layers:
        keras_name = canonical_layer(name)
        stored = config.embedding_shape(name)
        dims = 1
        for d in stored:
            dims *= d
        records.append(
            {
                "name": name,
                "keras_layer": keras_name,
                "alias": alias_of(keras_name),
                "feature_shape": list(config.feature_shape(name)),
                "shape": list(stored),
                "dims": dims,
                "dtype": config.output_dtype,
                "path": layout.join(layout.EMBEDDINGS_DIR, name),
            }
        )
    return records


def write_manifest(output_dir: str, manifest: dict) -> str:
    """Write ``manifest`` as the last file of a run; returns its path."""
    path = layout.manifest_path(output_dir)
    write_atomically(path, json.dumps(manifest, indent=2, sort_keys=False).encode())
    return path


def read_manifest(output_dir: str) -> dict:
    with FileSystems.open(layout.manifest_path(output_dir)) as handle:
        return json.loads(handle.read())
