#!/bin/bash
# Run one stage of a run on a SLURM cluster: N array tasks, then the merge once all of them succeeded.
#
#   scripts/slurm/submit.sh render params/objaverse_vitb32.yaml 16 [RUN_DIR]
#   scripts/slurm/submit.sh embed  params/objaverse_vitb32.yaml 4  [RUN_DIR]   (after the render merge)
#
# Then run the notebooks as usual: 01 renders nothing, 03 finds the merged embeddings valid.
#   .venv/bin/mvclip run --config params/objaverse_vitb32.yaml [--run-dir RUN_DIR]
# Prints the merge job's id: pass `--dependency=afterok:<id>` to chain the next stage.
set -euo pipefail
STAGE=${1:?usage: scripts/slurm/submit.sh render|embed CONFIG N_SHARDS [RUN_DIR]}
CONFIG=${2:?the run config}
SHARDS=${3:?the number of shards}
RUN_DIR=${4:-}
SBATCH=${SBATCH:-sbatch}
HERE=$(cd "$(dirname "$0")" && pwd)
case "$STAGE" in
  render|embed) ;;
  *) echo "submit.sh: stage '$STAGE': expected render or embed" >&2; exit 2 ;;
esac
ARRAY=$($SBATCH --parsable --array=0-$(( SHARDS - 1 )) "$HERE/${STAGE}_array.sbatch" "$CONFIG" $RUN_DIR)
$SBATCH --parsable --dependency=afterok:${ARRAY%%;*} "$HERE/merge.sbatch" "$STAGE" "$CONFIG" "$SHARDS" $RUN_DIR
