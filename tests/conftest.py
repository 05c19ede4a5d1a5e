"""Shared fixtures: a ResNet50 weights file written by the test session, generated images."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# run() called again and again in one test process keeps its last 4 networks, not 1 (each
# new setting costs a ResNet50 build, 2-3 s): models/extractor.py.
os.environ.setdefault("RESNET50_EMBEDDINGS_MODELS_KEPT", "4")
# As many test processes as cores (run_tests.sh): each one's TensorFlow computes on one
# thread, as local worker processes do (pipeline/local.py), instead of every process
# spinning a pool as wide as the machine. Read when TensorFlow starts, after this file.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) >= (os.cpu_count() or 1):
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The host allocator the product's processes use (models/tfload.py), also where a test
# imports TensorFlow or tf_keras directly.
from models.tfload import choose_host_allocator  # noqa: E402

choose_host_allocator()

WEIGHTS_SEED = 1234


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory) -> str:
    """ResNet50 (include_top=False) weights from a seed, saved as HDF5 like a user's file."""
    import tf_keras

    from models.weights import randomize

    model = tf_keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    randomize(model, WEIGHTS_SEED)
    path = tmp_path_factory.mktemp("weights") / "resnet50_notop_seeded.h5"
    model.save_weights(str(path))
    return str(path)


@pytest.fixture
def offline_imagenet(monkeypatch, tmp_path):
    """An empty Keras cache and an ImageNet origin that refuses connections at once."""
    import tf_keras.src.applications.resnet as keras_resnet

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(keras_resnet, "BASE_WEIGHTS_PATH", "http://127.0.0.1:9/keras-applications/")


@pytest.fixture(autouse=True)
def in_process_runs(request, monkeypatch):
    """run(argv) in tests stays in one process (fast, and test-module DoFns unpickle): the
    local multi-process default is tested on its own (test_run.py, the CLI subprocess
    tests). Mark a test ``local_workers`` to keep the default."""
    if "local_workers" in request.keywords:
        return
    import pipeline.run

    monkeypatch.setattr(pipeline.run, "use_local_workers", lambda *args, **kwargs: None)


@pytest.fixture(scope="session")
def calibrated_weights_file(tmp_path_factory) -> str:
    """Seeded ResNet50 with BatchNorm calibrated on generated images (small, for tests)."""
    from bench.network import write_calibrated_weights

    path = tmp_path_factory.mktemp("calibrated") / "resnet50_calibrated.h5"
    return write_calibrated_weights(str(path), seed=5, images=48, side=96)


@pytest.fixture(scope="session")
def overflowing_weights_file(tmp_path_factory) -> str:
    """Seeded ResNet50 whose res5 exceeds float16's range (65,504) and not float32's: the
    last BatchNorm's scale times 10^6. float16 turns res5 into inf; float32 is fine."""
    import tf_keras

    from models.weights import randomize

    model = tf_keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    randomize(model, 3)
    norm = model.get_layer("conv5_block3_3_bn")
    gamma, *rest = norm.get_weights()
    norm.set_weights([gamma * 1e6, *rest])
    path = tmp_path_factory.mktemp("overflow") / "resnet50_overflowing.h5"
    model.save_weights(str(path))
    return str(path)


#: Modules that run whole jobs, start processes or build packages: not in the fast tier
#: (./run_tests.sh --fast, -m "not slow"). Every other module unit-tests one module.
SLOW_MODULES = frozenset({
    "test_build", "test_chunks", "test_chunks_cli", "test_damage", "test_duplicates", "test_report_page",
    "test_vector_index", "test_devicecheck", "test_foreign_inputs", "test_handler", "test_hostile", "test_img2dataset", "test_incremental",
    "test_incremental_shards", "test_kill_rerun", "test_lock", "test_packaging", "test_pinning", "test_progress",
    "test_readme", "test_run", "test_run_dataflow", "test_run_local", "test_serving",
})


def pytest_configure(config):
    config.addinivalue_line("markers", "local_workers: keep the local multi-process default")
    config.addinivalue_line("markers", "slow: runs whole jobs or processes; left out by --fast")
    # pytest resets warning filters per test: the one transforms/listing.py sets for the program.
    from transforms.listing import NESTED_SET_WARNING
    config.addinivalue_line("filterwarnings", f"ignore:{NESTED_SET_WARNING}:FutureWarning")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def _modules_with_module_fixtures() -> set[str]:
    """Test files (as nodeids start) that define a module-scoped fixture."""
    folder = os.path.dirname(os.path.abspath(__file__))
    return {f"tests/{name}" for name in os.listdir(folder)
            if name.startswith("test_") and name.endswith(".py")
            and 'scope="module"' in open(os.path.join(folder, name), encoding="utf-8").read()}


def pytest_xdist_make_scheduler(config, log):
    """run_tests.sh spreads tests over workers one by one, except the tests of a module
    with a module-scoped fixture, which go to one worker together so that the fixture is
    made once. (xdist's own loadgroup did this until pytest 9.2, which ignores the nodeid
    suffix it relies on: every such fixture was then made on both workers.)"""
    from xdist.scheduler import LoadScopeScheduling

    grouped = _modules_with_module_fixtures()

    class ModuleFixturesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in grouped else nodeid

    return ModuleFixturesTogether(config, log)
