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
    """The README's GPU submission, plus Beam's offline dry-run switches."""
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
        "--experiments=no_use_multiple_sdk_containers",
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


def top_level_labels(job) -> set[str]:
    transforms = job.proto_pipeline.components.transforms.values()
    return {t.unique_name for t in transforms if "/" not in t.unique_name}


def test_dataflow_gpu_job_is_built_with_our_steps_and_gpu_options(capsys):
    job = build_job(dataflow_argv())
    assert {"ReadImages", "DecodeImages", "ResizeImages", "BatchByShape", "ExtractLayers",
            "CollectErrors", "WriteEmbeddings", "FinalizeRun"} <= top_level_labels(job)
    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert {"WriteEmbeddings/Write[res3]", "WriteEmbeddings/Write[res5]",
            "FinalizeRun/WriteManifest"} <= names
    assert job.proto.name == "resnet50-embeddings-test"
    assert job.proto.type == apiclient.dataflow.JobType.JOB_TYPE_BATCH

    environment = dataflow_environment(job)
    assert list(environment.service_options) == [GPU_SERVICE_OPTION]
    assert "no_use_multiple_sdk_containers" in environment.experiments
    assert "use_multiple_sdk_containers" not in environment.experiments
    (pool,) = environment.worker_pools
    assert pool.machine_type == "g2-standard-4" and pool.disk_size_gb == 50
    images = [e.payload for e in job.proto_pipeline.components.environments.values()]
    assert any(IMAGE.encode() in payload for payload in images)

    # Our options travel in the job too, so workers build the same configuration.
    options = job.options.get_all_options()
    assert options["layers"] == "res3,res5" and options["mixed_precision"] == "float16"
    assert "dry run: built the DataflowRunner job" in capsys.readouterr().out


def test_incremental_dataflow_job_reads_earlier_runs_and_records_itself():
    job = build_job(dataflow_argv("--mode", "incremental"))
    labels = top_level_labels(job)
    assert {"DoneIds", "SkipEmbedded", "FinalizeRun"} <= labels


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
