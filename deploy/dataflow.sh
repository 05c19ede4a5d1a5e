#!/usr/bin/env bash
# Build the GPU container, the Flex Template, run it once, and schedule it nightly as a
# Dataflow Data Pipeline. Run from the repository root after `gcloud auth login`; every
# value below is an example to replace. Steps can be run one by one: ./deploy/dataflow.sh image
#
# Worker layout (BENCHMARKS.md, "Worker layouts"): Dataflow's default of one SDK process per
# vCPU, so that every vCPU decodes, and model_copies=1, so that those processes share one
# model on the GPU, in a model process of its own. `run_split` instead decodes on CPU workers
# and sends the batches to GPU workers (right fitting, accelerator_hint).
set -euo pipefail

PROJECT="${PROJECT:-my-project}"
REGION="${REGION:-us-central1}"
BUCKET="${BUCKET:-gs://my-bucket}"
REPOSITORY="${REPOSITORY:-embeddings}"
IMAGE="${REGION}-docker.pkg.dev/${PROJECT}/${REPOSITORY}/resnet50-gpu:0.1.0"
TEMPLATE="${BUCKET}/templates/resnet50-embeddings.json"
WEIGHTS="${BUCKET}/weights/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
GPU="worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
TWO_GPUS="worker_accelerator=type:nvidia-l4;count:2;install-nvidia-driver"
# gcloud's ^~^ prefix makes '~' the separator, because values hold commas and ';'.
PARAMETERS="^~^input=${BUCKET}/images/**~output=${BUCKET}/embeddings~mode=incremental~layers=res2,res3,res4,res5~weights=${WEIGHTS}~mixed_precision=float16~batch_size=128~max_error_fraction=0.05~model_copies=1~sdk_container_image=${IMAGE}"
# Right fitting: the L4 on the model step alone, on g2-standard-4 workers of their own.
SPLIT_HINT="type:nvidia-l4;count:1;install-nvidia-driver;machine_type:g2-standard-4"

image() {  # Build and push the worker + launcher image with Cloud Build (no local Docker).
  gcloud artifacts repositories create "$REPOSITORY" --repository-format=docker \
    --location="$REGION" --project="$PROJECT" 2>/dev/null || true
  gcloud builds submit --project="$PROJECT" --region="$REGION" \
    --config deploy/cloudbuild.yaml --substitutions "_IMAGE=${IMAGE}" .
}

weights() {  # Copy the ImageNet weights from the Keras cache (they must be there already).
  gcloud storage cp ~/.keras/models/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 "$WEIGHTS"
}

template() {  # The template spec points at the image and carries deploy/metadata.json.
  gcloud dataflow flex-template build "$TEMPLATE" --project="$PROJECT" \
    --image "$IMAGE" --sdk-language PYTHON --metadata-file deploy/metadata.json
}

run() {  # One launch, now.
  gcloud dataflow flex-template run "resnet50-embeddings-$(date -u +%Y%m%d-%H%M%S)" \
    --project="$PROJECT" --region="$REGION" --template-file-gcs-location "$TEMPLATE" \
    --parameters "$PARAMETERS" \
    --worker-machine-type g2-standard-8 --max-workers 4 \
    --temp-location "${BUCKET}/tmp" \
    --additional-experiments "${GPU}"
}

run_two_gpus() {  # One launch on g2-standard-24 workers with 2 L4s each: one model copy per L4.
  # model_copies, mixed_precision and batch_size are left out: the launcher resolves them
  # from the accelerator type (2 copies, bfloat16 on an L4, batch 64; docs/gpus.md).
  gcloud dataflow flex-template run "resnet50-embeddings-2gpu-$(date -u +%Y%m%d-%H%M%S)" \
    --project="$PROJECT" --region="$REGION" --template-file-gcs-location "$TEMPLATE" \
    --parameters "^~^input=${BUCKET}/images/**~output=${BUCKET}/embeddings~mode=incremental~layers=res2,res3,res4,res5~weights=${WEIGHTS}~mixed_precision=auto~max_error_fraction=0.05~sdk_container_image=${IMAGE}" \
    --worker-machine-type g2-standard-24 --max-workers 4 \
    --temp-location "${BUCKET}/tmp" \
    --additional-experiments "${TWO_GPUS}"
}

run_split() {  # One launch: decoding on n2-standard-16 CPU workers, the model on L4 workers.
  gcloud dataflow flex-template run "resnet50-embeddings-split-$(date -u +%Y%m%d-%H%M%S)" \
    --project="$PROJECT" --region="$REGION" --template-file-gcs-location "$TEMPLATE" \
    --parameters "${PARAMETERS}~accelerator_hint=${SPLIT_HINT}" \
    --worker-machine-type n2-standard-16 --max-workers 8 \
    --temp-location "${BUCKET}/tmp"
}

schedule() {  # Nightly at 02:00 UTC as a Dataflow Data Pipeline.
  gcloud datapipelines pipeline create resnet50-embeddings-nightly \
    --project="$PROJECT" --region="$REGION" --pipeline-type=batch \
    --template-type=flex --template-file-gcs-location="$TEMPLATE" \
    --schedule="0 2 * * *" --time-zone=UTC \
    --temp-location="${BUCKET}/tmp" --max-workers=4 --worker-machine-type=g2-standard-8 \
    --parameters "$PARAMETERS" \
    --additional-experiments "${GPU}"
}

for step in "${@:-image template run}"; do
  for name in $step; do "$name"; done
done
