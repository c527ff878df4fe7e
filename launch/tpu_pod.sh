#!/usr/bin/env bash
# Runs stylejax on every worker of a Cloud TPU VM pod slice (one process per worker host).
#
#   export TPU_NAME=my-v5e-64 ZONE=us-west4-a [PROJECT=my-project] [REMOTE_DIR=stylejax]
#   launch/tpu_pod.sh setup     # copy this checkout (git-tracked files) to all workers, install
#   launch/tpu_pod.sh run --config=configs/stylegan2.py:ffhq1024 --workdir=gs://BUCKET/ffhq1024 \
#       --config.data.directory=gs://BUCKET/tensorflow_datasets
#   launch/tpu_pod.sh stop      # SIGTERM on all workers: each saves a checkpoint and exits
#
# `run` starts `python3 -m stylejax.main ARGS` on all workers with STYLEJAX_DISTRIBUTED=1, so
# jax.distributed.initialize() finds the coordinator, process count and rank from the TPU VM
# metadata. Every worker's output goes to ~/stylejax.log on that worker and, through ssh, here.
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME to the TPU VM (pod slice) name}"
: "${ZONE:?set ZONE to the TPU VM zone, e.g. us-west4-a}"
REMOTE_DIR="${REMOTE_DIR:-stylejax}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

tpu_vm=(gcloud compute tpus tpu-vm)
where=(--zone="$ZONE")
if [[ -n "${PROJECT:-}" ]]; then where+=(--project="$PROJECT"); fi

on_all_workers() {  # the command string runs in a login shell on every worker
    "${tpu_vm[@]}" ssh "$TPU_NAME" "${where[@]}" --worker=all --command="$1"
}

case "${1:-}" in
    setup)
        archive="$(mktemp -d)/stylejax.tar.gz"
        git -C "$repo_root" ls-files -z | tar -C "$repo_root" -czf "$archive" --null -T -
        "${tpu_vm[@]}" scp "$archive" "$TPU_NAME:stylejax.tar.gz" "${where[@]}" --worker=all
        on_all_workers "mkdir -p $REMOTE_DIR && tar -xzf stylejax.tar.gz -C $REMOTE_DIR \
&& pip install -q -e '$REMOTE_DIR[tpu]'"
        ;;
    run)
        shift
        args="$(printf '%q ' "$@")"
        on_all_workers "cd $REMOTE_DIR && STYLEJAX_DISTRIBUTED=1 python3 -m stylejax.main \
$args 2>&1 | tee -a ~/stylejax.log"
        ;;
    stop)
        on_all_workers "pkill -TERM -f 'python3 -m stylejax.main' || true"
        ;;
    *)
        echo "usage: $0 setup | run ARGS... | stop   (with TPU_NAME and ZONE set)" >&2
        exit 2
        ;;
esac
