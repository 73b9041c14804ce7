#!/bin/bash
# Example SLURM job array: a sweep of one case over beta, one array task per value, each its own
# run file (the --set overrides are recorded in it and name it).
#
# Submit from the repository root (SLURM does not create the directory of --output):
#
#     mkdir -p out && sbatch scripts/slurm_sweep.sh
#     mkdir -p out && sbatch --export=ALL,CASE=cases/sphere_metastable.toml scripts/slurm_sweep.sh
#
# Task i runs `vlasov-tf run $CASE --set model.beta=${BETAS[i]} --out out/sweep-$SLURM_ARRAY_JOB_ID`,
# writing out/sweep-<job id>/<case name>-model.beta-<beta>.h5. Resubmitting a task (time limit, node
# failure) with RESUME=1 continues its run file; a file run with another beta is refused, so a
# task never mixes two points of the sweep. For MPI tasks (large grids), see scripts/slurm_job.sh
# for the environment and launch line, and raise --ntasks below.
#
# Sites differ: partitions, accounts and module names are examples.

#SBATCH --job-name=vlasov-tf-sweep
#SBATCH --array=0-4
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --time=01:00:00
#SBATCH --output=out/%x-%A_%a.log
# #SBATCH --partition=compute         # site-specific
# #SBATCH --account=my_project        # site-specific

set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
# module load python/3.11             # site-specific
source .venv/bin/activate
export VLASOV_TF_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

CASE=${CASE:-cases/sphere_collapse.toml}
BETAS=(0.5 1 2 4 8)
BETA=${BETAS[$SLURM_ARRAY_TASK_ID]}
OUT=out/sweep-${SLURM_ARRAY_JOB_ID}
mkdir -p "$OUT"
vlasov-tf run "$CASE" --set "model.beta=$BETA" --out "$OUT" ${RESUME:+--resume}
