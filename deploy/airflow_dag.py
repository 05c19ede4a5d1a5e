"""Airflow DAG: every night, launch the Flex Template in incremental mode on GPU workers,
one chunk per job (--commit_every), job after job until nothing new is left or the night's
window closes; the next night carries on where the last committed chunk ended.

Needs apache-airflow with apache-airflow-providers-google and
apache-airflow-providers-apache-beam (the Google provider's Dataflow module imports it).
Checked to load in a DagBag with Airflow 3.3.2, google provider 22.8.0. Edit the constants:
the project, region, bucket, template spec and container image built as docs/deploy.md's
"Flex Template" section shows.

max_active_runs=1 keeps Airflow from starting a second launch while one runs; the root's
lock (--mode incremental) refuses one anyway. The batch job is waited for, so the task's
state is the job's state; the job writes run=<UTC>/manifest.json and _runs/<id>.json last.
After each job, `more_to_embed` reads that newest _runs/<id>.json: its `chunk.files_after_last`
says whether files are left (0: done for tonight), and a ShortCircuitOperator skips the
remaining launches when none are or the window has closed. A job that fails stops the
chain; its chunk is lost, every committed one stays (docs/incremental.md).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pendulum
from airflow import DAG
from airflow.providers.google.cloud.hooks.gcs import GCSHook
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator

PROJECT = "my-project"
REGION = "us-central1"
BUCKET = "gs://my-bucket"
TEMPLATE = f"{BUCKET}/templates/resnet50-embeddings.json"
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/embeddings/resnet50-gpu:0.1.0"
GPU = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
OUTPUT = f"{BUCKET}/embeddings"
# Images per job: a job of 2 million on 4 L4s runs about 2 hours (docs/incremental.md).
COMMIT_EVERY = 2_000_000
JOBS_PER_NIGHT = 4
WINDOW_HOURS = 8


def more_to_embed(output: str = OUTPUT, window_hours: float = WINDOW_HOURS, *, data_interval_end=None) -> bool:
    """True when the newest committed chunk left files after it and the window is open."""
    bucket, _, prefix = output.removeprefix("gs://").partition("/")
    hook = GCSHook()
    entries = sorted(n for n in hook.list(bucket, prefix=f"{prefix}/_runs/") if n.endswith(".json"))
    if not entries:
        return False  # no job committed: nothing to carry on from
    newest = json.loads(hook.download(bucket, entries[-1]))
    left = (newest.get("chunk") or {}).get("files_after_last", 0)
    closes = data_interval_end + timedelta(hours=window_hours) if data_interval_end else None
    return left > 0 and (closes is None or datetime.now(timezone.utc) < closes)


with DAG(
    dag_id="resnet50_embeddings_nightly",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["embeddings", "dataflow"],
) as dag:
    previous = None
    for job in range(JOBS_PER_NIGHT):
        launch = DataflowStartFlexTemplateOperator(
            task_id="embed_new_images" if job == 0 else f"embed_new_images_{job + 1}",
            project_id=PROJECT,
            location=REGION,
            wait_until_finished=True,
            body={
                "launchParameter": {
                    "jobName": f"resnet50-embeddings-{{{{ ts_nodash | lower }}}}-{job + 1}",
                    "containerSpecGcsPath": TEMPLATE,
                    "parameters": {
                        "input": f"{BUCKET}/images/**",
                        "output": OUTPUT,
                        "mode": "incremental",
                        "commit_every": str(COMMIT_EVERY),
                        "layers": "res2,res3,res4,res5",
                        "weights": f"{BUCKET}/weights/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                        "mixed_precision": "float16",
                        "batch_size": "128",
                        "max_error_fraction": "0.05",
                        # One SDK process per vCPU (Dataflow's default) decoding, one model on the GPU.
                        "model_copies": "1",
                    },
                    "environment": {
                        "machineType": "g2-standard-8",
                        "sdkContainerImage": IMAGE,
                        "tempLocation": f"{BUCKET}/tmp",
                        "maxWorkers": 4,
                        "additionalExperiments": [GPU],
                    },
                }
            },
        )
        if previous is not None:
            previous >> launch
        check = ShortCircuitOperator(task_id=f"more_after_job_{job + 1}", python_callable=more_to_embed)
        launch >> check
        previous = check
