"""The CLI builds a Dataflow GPU job offline, the way Beam's own Dataflow tests do:
DataflowRunner with --dry_run=True --no_auth --sdk_location=container (needs the gcp extra)."""

from __future__ import annotations

import pytest

from pipeline.run import EXIT_OK, EXIT_USAGE, run

apiclient = pytest.importorskip(
    "apache_beam.runners.dataflow.internal.apiclient",
    reason="DataflowRunner needs apache-beam[gcp], installed by ./run_tests.sh",
)

IMAGE = "us-central1-docker.pkg.dev/my-project/embeddings/resnet50-gpu:0.1.0"
GPU_SERVICE_OPTION = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"


def dataflow_argv(*extra: str) -> list[str]:
    """The README's GPU submission (one SDK process per vCPU, Dataflow's default, and one
    model per GPU: --model_copies 1), plus Beam's offline dry-run switches."""
    return [
        "--runner", "DataflowRunner",
        "--project", "my-project", "--region", "us-central1",
        "--temp_location", "gs://my-bucket/tmp", "--staging_location", "gs://my-bucket/staging",
        "--job_name", "resnet50-embeddings-test",
        "--input", "gs://my-bucket/images/**", "--output", "gs://my-bucket/embeddings/run1",
        "--layers", "res3,res5", "--image_size", "224", "--weights", "random",
        "--mixed_precision", "float16",
        f"--dataflow_service_options={GPU_SERVICE_OPTION}",
        "--machine_type", "g2-standard-4",
        "--model_copies", "1",
        "--sdk_container_image", IMAGE,
        "--disk_size_gb", "50",
        "--dry_run=True", "--no_auth", "--sdk_location=container",
        *extra,
    ]


def build_job(argv: list[str]):
    results = []
    assert run(argv, on_result=results.append) == EXIT_OK
    (result,) = results
    return result.job


def dataflow_environment(job):
    """The Environment proto the Dataflow service would receive, built by Beam's own code
    from the job's options (a dry run stops before this step)."""
    return apiclient.Environment(
        packages=[], options=job.options, environment_version="8",
        proto_pipeline_staged_url="gs://my-bucket/staging/pipeline.pb",
        proto_pipeline=job.proto_pipeline,
    ).proto


def step_name(unique_name: str) -> str:
    """A step's name with the ReadInputs composite left out: its steps (ListFiles,
    ReadImages, the skips) read as top-level steps of the job."""
    return unique_name.removeprefix("ReadInputs/")


def step_names(job) -> set[str]:
    return {step_name(t.unique_name) for t in job.proto_pipeline.components.transforms.values()}


def top_level_labels(job) -> set[str]:
    return {name for name in step_names(job) if "/" not in name}


def test_dataflow_gpu_job_is_built_with_our_steps_and_gpu_options(capsys):
    job = build_job(dataflow_argv())
    assert {"ListFiles", "ReadImages", "EmbedImages", "CollectErrors", "WriteEmbeddings",
            "FinalizeRun"} <= top_level_labels(job)
    names = step_names(job)
    assert {"EmbedImages/PrepareBatches",
            "EmbedImages/ExtractLayers"} <= names
    assert {"WriteEmbeddings/Write[res3]", "WriteEmbeddings/Write[res5]",
            "FinalizeRun/WriteManifest"} <= names
    assert job.proto.name == "resnet50-embeddings-test"
    assert job.proto.type == apiclient.dataflow.JobType.JOB_TYPE_BATCH

    environment = dataflow_environment(job)
    assert list(environment.service_options) == [GPU_SERVICE_OPTION]
    # One SDK process per vCPU (Dataflow's default): every core decodes.
    assert "no_use_multiple_sdk_containers" not in environment.experiments
    (pool,) = environment.worker_pools
    assert pool.machine_type == "g2-standard-4" and pool.disk_size_gb == 50
    images = [e.payload for e in job.proto_pipeline.components.environments.values()]
    assert any(IMAGE.encode() in payload for payload in images)

    # Our options travel in the job too, so workers build the same configuration.
    options = job.options.get_all_options()
    assert options["layers"] == "res3,res5" and options["mixed_precision"] == "float16"
    assert "dry run: built the DataflowRunner job" in capsys.readouterr().out
    # ... and the model step carries one model per machine, shared by its SDK processes.
    handler = extract_handler(job)
    assert handler.share_model_across_processes() and handler.model_copies() == 1
    assert handler.config.layers == ("res3", "res5") and handler.get_resource_hints() == {}
    assert accelerator_hints(job) == {}


def _leaf_named(job, prefix: str):
    (transform,) = [t for t in job.proto_pipeline.components.transforms.values()
                    if t.unique_name.startswith(prefix) and not t.subtransforms]
    return transform


def extract_handler(job):
    """The ResNet50Handler inside the job's model step, unpickled as a worker would."""
    from apache_beam.internal import pickler
    from apache_beam.portability.api import beam_runner_api_pb2

    transform = _leaf_named(job, "EmbedImages/ExtractLayers/Extract/")
    payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
    do_fn = pickler.loads(payload.do_fn.payload)[0]
    return do_fn._handler  # pylint: disable=protected-access


def accelerator_hints(job) -> dict[str, bytes]:
    """Leaf step name -> its accelerator resource hint, for every step that has one."""
    components = job.proto_pipeline.components
    hints = {}
    for transform in components.transforms.values():
        environment = components.environments.get(transform.environment_id)
        if environment is not None and "beam:resources:accelerator:v1" in environment.resource_hints:
            hints[transform.unique_name] = environment.resource_hints["beam:resources:accelerator:v1"]
    return hints


RIGHT_FITTING = "type:nvidia-l4;count:1;install-nvidia-driver;machine_type:g2-standard-8"


def test_accelerator_hint_sits_on_the_model_step_alone():
    """Right fitting: decoding on the default (CPU) workers, the model on GPU workers."""
    argv = [a for a in dataflow_argv("--accelerator_hint", RIGHT_FITTING)
            if not a.startswith("--dataflow_service_options")]
    argv[argv.index("--machine_type") + 1] = "n2-standard-8"
    job = build_job(argv)
    assert accelerator_hints(job) == {
        "EmbedImages/ExtractLayers/Extract/ParDo(_ExtractFn)": RIGHT_FITTING.encode()}
    # The batches reach the GPU workers through a shuffle placed just before the model step.
    names = step_names(job)
    assert any(n.startswith("EmbedImages/ExtractLayers/ToModelWorkers/") for n in names)
    assert not accelerator_hints(build_job(dataflow_argv()))
    assert extract_handler(job).get_resource_hints() == {"accelerator": RIGHT_FITTING}


def test_accelerator_hint_is_refused_with_worker_accelerator(capsys):
    assert run(dataflow_argv("--accelerator_hint", RIGHT_FITTING)) == EXIT_USAGE
    assert "does not combine with worker_accelerator" in capsys.readouterr().err


@pytest.mark.parametrize("copies", ["0", "-2"])
def test_model_copies_under_one_are_refused(copies, capsys):
    argv = dataflow_argv()
    argv[argv.index("--model_copies") + 1] = copies
    assert run(argv) == EXIT_USAGE
    assert "--model_copies must be at least 1" in capsys.readouterr().err


def test_incremental_dataflow_job_reads_earlier_runs_and_records_itself():
    job = build_job(dataflow_argv("--mode", "incremental"))
    labels = top_level_labels(job)
    assert {"ListFiles", "EarlierImages", "EarlierSkipped", "EarlierShards", "SkipUnchanged", "HashImages",
            "SkipSameContent", "ReadNewImages", "FinalizeRun"} <= labels
    names = step_names(job)
    assert {"SkipUnchanged/JoinByUri", "SkipSameContent/JoinById", "WriteEmbeddings/WriteSkipped",
            "WriteEmbeddings/WriteShards", "ReadNewImages/GroupBySource"} <= names
    assert job.options.get_all_options()["skip_by"] == "metadata"


class Graph:
    """The leaf transforms of a built job, with what feeds each PCollection."""

    def __init__(self, job):
        from apache_beam.portability.api import beam_runner_api_pb2

        self.transforms = job.proto_pipeline.components.transforms
        self.producer = {}
        for transform_id, transform in self.transforms.items():
            if not transform.subtransforms:
                for pcoll in transform.outputs.values():
                    self.producer[pcoll] = transform_id
        self.side_inputs = []  # (consumer's name, side input PCollection)
        for transform in self.transforms.values():
            if transform.spec.urn == "beam:transform:pardo:v1":
                payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
                self.side_inputs += [(transform.unique_name, transform.inputs[name])
                                     for name in payload.side_inputs]

    def upstream(self, pcoll: str, stop=lambda name: False) -> set[str]:
        """Names of every transform that feeds ``pcoll``, not walking past ``stop``."""
        seen, names, todo = set(), set(), [pcoll]
        while todo:
            transform_id = self.producer.get(todo.pop())
            if transform_id is None or transform_id in seen:
                continue
            seen.add(transform_id)
            transform = self.transforms[transform_id]
            names.add(step_name(transform.unique_name))
            if not stop(transform.unique_name):
                todo.extend(transform.inputs.values())
        return names


def from_earlier_runs(names) -> set[str]:
    return {n for n in names if n.startswith(("EarlierImages/", "EarlierSkipped/", "EarlierShards/"))}


def summarises(name: str) -> bool:
    """Steps whose output is small whatever the collection: FinalizeRun's global counts,
    first-batch time and model records (one per model process), and the sinks' steps that
    hand on written file names."""
    return name.startswith(("FinalizeRun/Count", "FinalizeRun/AllCounts", "FinalizeRun/FirstBatch", "FinalizeRun/ModelRecords")) or any(
        f"/WriteImpl/{step}" in name for step in ("WriteBundles", "Extract", "PreFinalize", "FinalizeWrite"))


def test_no_side_input_is_fed_from_earlier_runs_rows():
    """Earlier runs' rows meet this run's files only in joins. What reaches a side input is
    a count, a time or file names, never rows, ids or uris."""
    graph = Graph(build_job(dataflow_argv("--mode", "incremental")))
    assert len(graph.side_inputs) > 20, "the counts, the time, the sinks' file names"
    for consumer, pcoll in graph.side_inputs:
        assert not from_earlier_runs(graph.upstream(pcoll, stop=summarises)), consumer
    # The check can fail: without stopping at the counts, earlier rows do reach a side input,
    # and they reach both joins.
    assert any(from_earlier_runs(graph.upstream(pcoll)) for _, pcoll in graph.side_inputs)
    for join in ("SkipUnchanged/JoinByUri", "SkipSameContent/JoinById"):
        (join_id,) = [i for i, t in graph.transforms.items() if step_name(t.unique_name).startswith(join + "/")
                      and t.spec.urn == "beam:transform:group_by_key:v1"]
        feeding = set().union(*(graph.upstream(p) for p in graph.transforms[join_id].inputs.values()))
        assert from_earlier_runs(feeding), join


@pytest.mark.parametrize("flag,value,message", [
    ("--input", "/data/images/*", "remote workers cannot read it"),
    ("--output", "/data/out", "remote workers cannot write it"),
    ("--weights", "/data/resnet50_notop.h5", "copy it to gs://"),
])
def test_local_paths_are_refused_for_remote_workers(flag, value, message, capsys):
    argv = dataflow_argv()
    argv[argv.index(flag) + 1] = value
    assert run(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["single", "incremental"])
def test_dataflow_job_with_shard_inputs_is_built(mode):
    argv = dataflow_argv("--input_format", "webdataset", "--image_column", "jpg", "--mode", mode)
    argv[argv.index("--input") + 1] = "gs://my-bucket/shards/*.tar"
    job = build_job(argv)
    options = job.options.get_all_options()
    assert options["input_format"] == "webdataset" and options["image_column"] == "jpg"
    reading = {"ReadImages"} if mode == "single" else {"SkipUnchanged", "HashImages", "ReadNewImages"}
    assert {"ListFiles", "EmbedImages", "WriteEmbeddings", "FinalizeRun"} | reading <= top_level_labels(job)
