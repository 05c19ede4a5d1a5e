#!/usr/bin/env bash
# Runs the extraction job on samples/images into output/ on the DirectRunner.
# Extra arguments go to `python -m pipeline.run` and win over the defaults here.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_venv.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

args=(--input "samples/images/*" --output output --overwrite)
weights_given=no
for arg in "$@"; do
  case "$arg" in --weights|--weights=*) weights_given=yes ;; esac
done
if [ "$weights_given" = no ]; then
  if ! probe=$(python -m models.weights 2>&1); then
    cat >&2 <<BANNER

################################################################################
#  ImageNet weights for ResNet50 could not be obtained on this machine.        #
#  CONTINUING WITH SEEDED RANDOM WEIGHTS (--weights random): the shapes and    #
#  the pipeline are real, the embeddings carry no meaning.                     #
#  For real embeddings pass --weights PATH.h5 (a copy of                       #
#  resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5) or run where the      #
#  Keras cache can download it. manifest.json records "kind": "random".        #
################################################################################
$(echo "$probe" | tail -n 1)

BANNER
    args+=(--weights random)
  fi
fi
exec python -m pipeline.run "${args[@]}" "$@"
