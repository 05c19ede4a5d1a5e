"""Airflow DAG: every night, launch the Flex Template in incremental mode on GPU workers.

Needs apache-airflow with apache-airflow-providers-google and
apache-airflow-providers-apache-beam (the Google provider's Dataflow module imports it).
Checked to load in a DagBag with Airflow 3.3.2, google provider 22.8.0. Edit the constants:
the project, region, bucket, template spec and container image built as docs/deploy.md's
"Flex Template" section shows.

max_active_runs=1 keeps Airflow from starting a second launch while one runs; the root's
lock (--mode incremental) refuses one anyway. The batch job is waited for, so the task's
state is the job's state; the job writes run=<UTC>/manifest.json and _runs/<id>.json last.
"""

from __future__ import annotations

import pendulum
from airflow import DAG
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator

PROJECT = "my-project"
REGION = "us-central1"
BUCKET = "gs://my-bucket"
TEMPLATE = f"{BUCKET}/templates/resnet50-embeddings.json"
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/embeddings/resnet50-gpu:0.1.0"
GPU = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"

with DAG(
    dag_id="resnet50_embeddings_nightly",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["embeddings", "dataflow"],
) as dag:
    DataflowStartFlexTemplateOperator(
        task_id="embed_new_images",
        project_id=PROJECT,
        location=REGION,
        wait_until_finished=True,
        body={
            "launchParameter": {
                "jobName": "resnet50-embeddings-{{ ts_nodash | lower }}",
                "containerSpecGcsPath": TEMPLATE,
                "parameters": {
                    "input": f"{BUCKET}/images/**",
                    "output": f"{BUCKET}/embeddings",
                    "mode": "incremental",
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
