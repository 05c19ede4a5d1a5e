"""Where ResNet50 weights come from: the Keras ImageNet cache, seeded random values, or an
HDF5 weights file. A file is only ever loaded as weights into the known architecture."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile

import numpy as np

WEIGHTS_IMAGENET = "imagenet"
WEIGHTS_RANDOM = "random"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
IMAGENET_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
#: tf_keras' WEIGHTS_HASHES["resnet50"][1] (a test keeps them equal), so a cached copy can be
#: verified without importing TensorFlow.
IMAGENET_NOTOP_MD5 = "4d473c1dd8becc155b73f8504c6f6626"

_log = logging.getLogger(__name__)


class WeightsError(RuntimeError):
    """Weights that cannot be had or do not fit ResNet50 (include_top=False)."""


def weights_kind(spec: str) -> str:
    """'imagenet', 'random' or 'file' for a ``--weights`` value."""
    return spec if spec in (WEIGHTS_IMAGENET, WEIGHTS_RANDOM) else "file"


def cached_imagenet_weights() -> str | None:
    """The Keras cache's copy of the ImageNet weights if present and intact (MD5 checked),
    found without importing TensorFlow; None otherwise."""
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    path = os.path.join(keras_home, "models", IMAGENET_NOTOP_FILE)
    if not os.path.isfile(path):
        return None
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return path if digest.hexdigest() == IMAGENET_NOTOP_MD5 else None


def imagenet_weights_path() -> str:
    """Local path of the ImageNet no-top weights, from the Keras cache or downloaded into it.

    Raises WeightsError naming the alternatives when they cannot be had (offline, say)."""
    cached = cached_imagenet_weights()
    if cached:
        return cached
    from tf_keras.src.applications.resnet import BASE_WEIGHTS_PATH, WEIGHTS_HASHES
    from tf_keras.utils import get_file

    try:
        return get_file(
            IMAGENET_NOTOP_FILE,
            BASE_WEIGHTS_PATH + IMAGENET_NOTOP_FILE,
            cache_subdir="models",
            file_hash=WEIGHTS_HASHES["resnet50"][1],
        )
    except Exception as exc:  # get_file raises bare Exception on fetch failures.
        raise WeightsError(
            "ImageNet weights for ResNet50 could not be obtained "
            f"({type(exc).__name__}: {exc}). Either copy {IMAGENET_NOTOP_FILE} from a "
            "machine that has it and pass --weights PATH.h5, or pass --weights random "
            "for seeded random weights (embeddings then carry no meaning)."
        ) from exc


def local_weights_file(spec: str) -> str:
    """A local copy of the weights file ``spec`` (any Beam filesystem path), checked to be HDF5."""
    from apache_beam.io.filesystems import FileSystems

    if "://" in spec:
        try:
            handle = FileSystems.open(spec)
        except Exception as exc:
            raise WeightsError(f"cannot open weights file {spec}: {exc}") from exc
        fd, local = tempfile.mkstemp(suffix=".h5", prefix="resnet50-weights-")
        with os.fdopen(fd, "wb") as out, handle:
            shutil.copyfileobj(handle, out)
    else:
        local = spec
        if not os.path.isfile(local):
            raise WeightsError(
                f"weights file {spec} does not exist; --weights takes imagenet, random or "
                "the path of a ResNet50 include_top=False weights file (.h5)"
            )
    with open(local, "rb") as handle:
        if handle.read(len(HDF5_MAGIC)) != HDF5_MAGIC:
            raise WeightsError(
                f"weights file {spec} is not an HDF5 file; expected ResNet50 include_top=False "
                "weights saved with model.save_weights('....h5')"
            )
    return local


def check_weights_layout(path: str, *, label: str) -> None:
    """Check with h5py alone that ``path`` holds ResNet50 include_top=False weights: the same
    number of weighted layers, each weight of the expected shape, in load order."""
    import h5py

    from schemas.layers import weight_layout

    expected = weight_layout()
    try:
        with h5py.File(path, "r") as h5:
            group = h5["model_weights"] if "model_weights" in h5 else h5
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]]
            found = []
            for name in names:
                weight_names = [w.decode() if isinstance(w, bytes) else w
                                for w in group[name].attrs["weight_names"]]
                if weight_names:
                    found.append((name, [tuple(group[name][w].shape) for w in weight_names]))
    except (OSError, KeyError) as exc:
        raise WeightsError(f"weights {label} are not a Keras HDF5 weights file ({exc})") from exc
    if len(found) != len(expected):
        raise WeightsError(
            f"weights {label} do not fit ResNet50 include_top=False: the file has {len(found)} "
            f"layers with weights, ResNet50 has {len(expected)}"
        )
    for index, ((name, shapes), (want_name, want_shapes)) in enumerate(zip(found, expected)):
        if shapes != want_shapes:
            raise WeightsError(
                f"weights {label} do not fit ResNet50 include_top=False: weighted layer "
                f"{index} ({name}) has shapes {shapes}, {want_name} needs {want_shapes}"
            )


def resolve_weights_file(spec: str) -> str | None:
    """The local HDF5 file to load for ``spec``, or None for seeded random weights."""
    kind = weights_kind(spec)
    if kind == WEIGHTS_RANDOM:
        return None
    if kind == WEIGHTS_IMAGENET:
        return imagenet_weights_path()
    return local_weights_file(spec)


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file on any Beam filesystem, read in 1 MiB chunks."""
    from apache_beam.io.filesystems import FileSystems

    digest = hashlib.sha256()
    with FileSystems.open(path) as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_record(spec: str, seed: int, weights_file: str | None) -> dict:
    """The weights' identity, as the manifest records it: the spec and its kind, the seed
    of random weights, and the file with its SHA-256 when there is one."""
    record = {"spec": spec, "kind": weights_kind(spec)}
    if spec == WEIGHTS_RANDOM:
        record["seed"] = seed
    if weights_file:
        record["file"] = weights_file
        record["sha256"] = file_sha256(weights_file)
    return record


def check_weights_identity(spec: str, path: str | None, expected_sha256: str | None) -> None:
    """Raise WeightsError unless the file at ``path`` (resolved from ``spec`` on this
    machine) has the SHA-256 the run was planned with. Nothing to check for random weights
    (``path`` None) or when no hash was pinned (``expected_sha256`` None)."""
    if path is None or expected_sha256 is None:
        return
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise WeightsError(
            f"weights {spec} read here ({path}) have SHA-256 {actual}, but the run was planned "
            f"with {expected_sha256} (the manifest's): the file changed after the launch. "
            "Refusing to embed with other weights than the manifest names."
        )


def load_weights_file(model, path: str, *, label: str) -> None:
    """Load HDF5 weights into ``model`` (the bare ResNet50), with a clear error on mismatch."""
    try:
        model.load_weights(path)
    except Exception as exc:
        raise WeightsError(
            f"weights {label} do not fit ResNet50 include_top=False "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def randomize(model, seed: int) -> None:
    """Set every weight of ``model`` from ``seed`` alone, the same in any process:
    He-normal kernels, zero biases and BatchNorm at identity (gamma 1, beta 0, mean 0, var 1)."""
    rng = np.random.default_rng(seed)
    values = []
    for variable in model.weights:
        name = variable.name.split("/")[-1].split(":")[0]
        shape = tuple(variable.shape)
        if name == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            values.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape).astype(np.float32))
        elif name in ("gamma", "moving_variance"):
            values.append(np.ones(shape, np.float32))
        elif name in ("bias", "beta", "moving_mean"):
            values.append(np.zeros(shape, np.float32))
        else:
            raise WeightsError(f"unexpected weight {variable.name} in ResNet50")
    model.set_weights(values)
    _log.info("ResNet50 weights set from seed %d (random, not trained)", seed)


def _probe() -> int:
    """``python -m models.weights``: print the ImageNet weights path, or why not (exit 1)."""
    try:
        print(imagenet_weights_path())
    except WeightsError as exc:
        print(exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_probe())
