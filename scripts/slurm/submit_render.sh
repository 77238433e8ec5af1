#!/bin/bash
# Render a run on a SLURM cluster: N array tasks, then the merge once all of them succeeded.
#
#   scripts/slurm/submit_render.sh params/objaverse_vitb32.yaml 16 [RUN_DIR]
#
# Then run the notebooks as usual (the merged dataset is reused: 01 renders nothing):
#   python -m mvclip_utils.pipeline --config params/objaverse_vitb32.yaml [--run-dir RUN_DIR]
set -euo pipefail
CONFIG=${1:?usage: scripts/slurm/submit_render.sh CONFIG N_SHARDS [RUN_DIR]}
SHARDS=${2:?the number of shards}
RUN_DIR=${3:-}
SBATCH=${SBATCH:-sbatch}
HERE=$(cd "$(dirname "$0")" && pwd)
ARRAY=$($SBATCH --parsable --array=0-$(( SHARDS - 1 )) "$HERE/render_array.sbatch" "$CONFIG" $RUN_DIR)
$SBATCH --parsable --dependency=afterok:${ARRAY%%;*} "$HERE/merge_render.sbatch" "$CONFIG" "$SHARDS" $RUN_DIR
