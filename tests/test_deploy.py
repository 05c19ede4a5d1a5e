"""deploy/: the scheduling examples use only parameters the template (and so the CLI)
has, with values the CLI accepts; the Dockerfile matches the pinned Beam version."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import types
from datetime import datetime, timedelta, timezone

import apache_beam
import pytest

from pipeline.options import unknown_arguments
from pipeline.plan import parse_args

DEPLOY = pathlib.Path(__file__).resolve().parents[1] / "deploy"
METADATA = json.loads((DEPLOY / "metadata.json").read_text())
PARAMETERS = {p["name"]: p for p in METADATA["parameters"]}


def check_template_parameters(values: dict[str, str]) -> None:
    """Every template parameter is known and matches its regexes; Beam pipeline options
    (sdk_container_image, ...) pass through; together they parse as the CLI would."""
    for name, value in values.items():
        if name in PARAMETERS:
            for pattern in PARAMETERS[name].get("regexes", []):
                assert re.fullmatch(pattern, value), (name, value)
        else:
            assert not unknown_arguments([f"--{name}={value}"]), f"{name} is neither ours nor Beam's"
    required = {name for name, p in PARAMETERS.items() if not p["isOptional"]}
    assert required <= set(values)
    parse_args([f"--{name}={value}" for name, value in values.items()])


class FakeBucket:
    """GCSHook's list and download over a dict of object names to bytes."""

    objects: dict[str, bytes] = {}

    def list(self, bucket, prefix=None):
        return [name for name in self.objects if name.startswith(prefix or "")]

    def download(self, bucket, object_name):
        return self.objects[object_name]


class Task:
    def __init__(self, **kwargs):
        self.kwargs, self.downstream = kwargs, []

    def __rshift__(self, other):
        self.downstream.append(other)
        return other


def load_dag_with_recording_stubs() -> dict:
    """Execute deploy/airflow_dag.py with stand-ins for the Airflow modules that record
    what the DAG passes; returns {'dag': kwargs, 'launches': [Task], 'checks': [Task],
    'namespace': the module's globals}."""
    recorded: dict = {"launches": [], "checks": []}

    class DAG:
        def __init__(self, **kwargs):
            recorded["dag"] = kwargs

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def recording(kind):
        def make(**kwargs):
            recorded[kind].append(Task(**kwargs))
            return recorded[kind][-1]
        return make

    def module(name, **attributes):
        made = types.ModuleType(name)
        made.__dict__.update(attributes)
        return made

    pendulum = module("pendulum", datetime=lambda *args, **kwargs: ("datetime", args, kwargs))
    modules = {
        "airflow": module("airflow", DAG=DAG),
        "airflow.providers.google.cloud.operators.dataflow": module(
            "dataflow", DataflowStartFlexTemplateOperator=recording("launches")),
        "airflow.providers.google.cloud.hooks.gcs": module("gcs", GCSHook=FakeBucket),
        "airflow.providers.standard.operators.python": module(
            "python", ShortCircuitOperator=recording("checks")),
        "pendulum": pendulum,
    }
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    namespace = {"__name__": "airflow_dag"}
    try:
        source = (DEPLOY / "airflow_dag.py").read_text()
        exec(compile(source, "airflow_dag.py", "exec"), namespace)
    finally:
        for name, saved_module in saved.items():
            if saved_module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = saved_module
    recorded["namespace"] = namespace
    return recorded


def test_airflow_dag_launches_the_template_with_valid_parameters():
    recorded = load_dag_with_recording_stubs()
    assert recorded["dag"]["max_active_runs"] == 1 and recorded["dag"]["catchup"] is False
    operator = recorded["launches"][0].kwargs
    assert operator["task_id"] == "embed_new_images"
    assert {"task_id", "project_id", "location", "body"} <= set(operator)
    launch = operator["body"]["launchParameter"]
    assert launch["containerSpecGcsPath"].endswith(".json")
    check_template_parameters(launch["parameters"])
    assert launch["parameters"]["mode"] == "incremental" and int(launch["parameters"]["commit_every"]) > 0
    dataflow_types = pytest.importorskip("google.cloud.dataflow_v1beta3.types")
    # The launch body is a valid LaunchFlexTemplateParameter (unknown fields raise).
    message = dataflow_types.LaunchFlexTemplateParameter.from_json(
        json.dumps(launch), ignore_unknown_fields=False)
    assert message.environment.machine_type == "g2-standard-8"
    assert any(e.startswith("worker_accelerator=type:nvidia-l4") for e in message.environment.additional_experiments)
    # The shipped layout: one SDK process per vCPU (Dataflow's default), one model per GPU.
    assert "no_use_multiple_sdk_containers" not in message.environment.additional_experiments
    assert launch["parameters"]["model_copies"] == "1"


def test_airflow_dag_launches_job_after_job_while_files_are_left():
    """launch 1 >> check 1 >> launch 2 >> ...: each check lets the next launch run only while
    the newest committed chunk left files after it and the night's window is open."""
    recorded = load_dag_with_recording_stubs()
    launches, checks = recorded["launches"], recorded["checks"]
    assert len(launches) == len(checks) >= 2
    for job, (launch, check) in enumerate(zip(launches, checks)):
        assert launch.downstream == [check]
        assert check.downstream == ([launches[job + 1]] if job + 1 < len(launches) else [])
    names = {l.kwargs["body"]["launchParameter"]["jobName"] for l in launches}
    assert len(names) == len(launches)  # Dataflow refuses two running jobs of one name
    more = recorded["namespace"]["more_to_embed"]
    runs = "embeddings/_runs/"
    FakeBucket.objects = {}
    assert more() is False  # nothing committed yet: nothing to carry on from
    FakeBucket.objects = {runs + "20261201T020000000000Z.json": json.dumps({"chunk": {"files_after_last": 0}}).encode(),
                          runs + "20261202T020000000000Z.json": json.dumps({"chunk": {"files_after_last": 5}}).encode(),
                          runs + "20261203T020000000000Z.json.untrusted": b"{}"}
    assert more() is True
    opened = datetime.now(timezone.utc)
    assert more(data_interval_end=opened) is True
    assert more(data_interval_end=opened - timedelta(hours=9)) is False  # the window closed
    FakeBucket.objects[runs + "20261204T020000000000Z.json"] = json.dumps({"chunk": {"files_after_last": 0}}).encode()
    assert more() is False  # nothing left after the newest chunk


DAGBAG_CHECK = """
import sys
from airflow.models import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.dags["resnet50_embeddings_nightly"]
task = dag.get_task("embed_new_images")
assert type(task).__name__ == "DataflowStartFlexTemplateOperator" and dag.max_active_runs == 1
print("ok", task.location, task.body["launchParameter"]["parameters"]["mode"])
"""


def test_airflow_dag_loads_in_a_real_dagbag():
    """Airflow conflicts with this environment, so it runs in an interpreter of its own:
    AIRFLOW_PYTHON=/path/to/venv/bin/python with apache-airflow,
    apache-airflow-providers-google and apache-airflow-providers-apache-beam installed."""
    python = os.environ.get("AIRFLOW_PYTHON")
    if not python:
        pytest.skip("set AIRFLOW_PYTHON to an interpreter with Airflow and its Google provider")
    completed = subprocess.run(
        [python, "-c", DAGBAG_CHECK, str(DEPLOY / "airflow_dag.py")], capture_output=True,
        text=True, timeout=300,
        env={**os.environ, "AIRFLOW_HOME": os.environ.get("AIRFLOW_HOME", "/tmp/airflow-home")},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().endswith("ok us-central1 incremental")


def gcloud_parameters() -> dict[str, str]:
    script = (DEPLOY / "dataflow.sh").read_text()
    (line,) = [l for l in script.splitlines() if l.startswith("PARAMETERS=")]
    value = line.split("=", 1)[1].strip('"')
    assert value.startswith("^~^")
    substitutions = {"${BUCKET}": "gs://my-bucket", "${WEIGHTS}": "gs://my-bucket/w.h5",
                     "${IMAGE}": "us-central1-docker.pkg.dev/p/r/img:1"}
    for key, replacement in substitutions.items():
        value = value.replace(key, replacement)
    return dict(item.split("=", 1) for item in value[3:].split("~"))


def test_gcloud_script_parameters_are_template_parameters():
    parameters = gcloud_parameters()
    check_template_parameters(parameters)
    assert parameters["model_copies"] == "1"
    script = (DEPLOY / "dataflow.sh").read_text()
    assert "--metadata-file deploy/metadata.json" in script
    assert "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver" in script
    assert "no_use_multiple_sdk_containers" not in script
    # run_split: the same parameters plus the hint, and no worker_accelerator on that launch.
    (hint,) = [l.split("=", 1)[1].strip('"') for l in script.splitlines() if l.startswith("SPLIT_HINT=")]
    check_template_parameters({**parameters, "accelerator_hint": hint})
    split = script[script.index("run_split()"):]
    split = split[:split.index("\n}")]
    assert "accelerator_hint=${SPLIT_HINT}" in split and "GPU" not in split
    subprocess.run(["bash", "-n", str(DEPLOY / "dataflow.sh")], check=True)


def test_cron_line_runs_the_cli_with_known_options():
    (line,) = [l for l in (DEPLOY / "crontab.example").read_text().splitlines()
               if l and not l.startswith("#")]
    fields = line.split(None, 5)
    assert len(fields) == 6 and fields[:5] == ["0", "2", "*", "*", "*"]
    words = shlex.split(fields[5].split(">>")[0])
    args = words[words.index("./run_local.sh") + 1:]
    assert not unknown_arguments(args)
    options = parse_args(args).options
    assert options.mode == "incremental" and options.commit_every > 0
    # The window closes with a Ctrl-C to the CLI itself (run_local.sh execs it).
    assert words[words.index("timeout"):words.index("timeout") + 3] == ["timeout", "--signal=INT", "4h"]
    assert (DEPLOY.parent / "run_local.sh").read_text().rstrip().splitlines()[-1].startswith("exec python")


def test_dockerfile_pins_the_beam_version_we_run_and_keeps_the_boot_entrypoint():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"ARG BEAM_VERSION={apache_beam.__version__}" in dockerfile
    assert "FROM apache/beam_python3.11_sdk:${BEAM_VERSION}" in dockerfile
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dockerfile
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py" in dockerfile
    assert "tensorflow[and-cuda]" in dockerfile
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M):
        for path in copied.split():
            assert (DEPLOY.parent / path).exists(), path


def test_the_two_gpu_launch_resolves_one_copy_per_l4_in_bfloat16():
    """run_two_gpus: valid template parameters; from its worker_accelerator (2 L4s) the
    launcher resolves 2 model copies, bfloat16 and batch 64, as docs/gpus.md says."""
    from types import SimpleNamespace

    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.compute import resolve_compute

    script = (DEPLOY / "dataflow.sh").read_text()
    launch = script[script.index("run_two_gpus()"):]
    launch = launch[:launch.index("\n}")]
    (value,) = re.findall(r'--parameters "\^~\^([^"]+)"', launch)
    for key, replacement in {"${BUCKET}": "gs://my-bucket", "${WEIGHTS}": "gs://my-bucket/w.h5",
                             "${IMAGE}": "us-central1-docker.pkg.dev/p/r/img:1"}.items():
        value = value.replace(key, replacement)
    parameters = dict(item.split("=", 1) for item in value.split("~"))
    check_template_parameters(parameters)
    assert "model_copies" not in parameters and "batch_size" not in parameters
    (two_gpus,) = [l.split("=", 1)[1].strip('"') for l in script.splitlines() if l.startswith("TWO_GPUS=")]
    assert '--additional-experiments "${TWO_GPUS}"' in launch and "count:2" in two_gpus
    options = SimpleNamespace(mixed_precision=parameters["mixed_precision"], batch_size=None, model_copies=None,
                              image_size="224", accelerator_hint=None, gpus="auto")
    compute = resolve_compute(PipelineOptions(["--experiments", two_gpus]), options, remote=True)
    assert (compute.model_copies, compute.precision, compute.batch_size) == (2, "bfloat16", 64)
