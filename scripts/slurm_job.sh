#!/bin/bash
# Example SLURM batch script: one vlasov-tf case on several nodes under MPI.
#
# Submit from the repository root (SLURM does not create the directory of --output, hence the mkdir):
#
#     mkdir -p out && sbatch scripts/slurm_job.sh
#     mkdir -p out && sbatch --export=ALL,CASE=cases/sphere_metastable.toml scripts/slurm_job.sh
#
# Resume a run that was killed (time limit, node failure): point RESUME_DIR at its output directory.
# Every snapshot it reported is on disk; --resume skips the finished jobs of the case and restarts the
# others from their last snapshot, bit for bit the uninterrupted result, on ANY number of ranks (the
# result does not depend on P beyond round-off; change --nodes / --ntasks-per-node freely):
#
#     sbatch --export=ALL,RESUME_DIR=out/123456 scripts/slurm_job.sh
#
# Output: one HDF5 run file per case, written by rank 0 only,
#     out/$SLURM_JOB_ID/<case name>.h5     (readable with h5py while it runs; <name>.xdmf/<job>.xdmf, one per
#                                          job for ParaView and meshio; <name>.log, the run's log)
# and the job's log (stdout and stderr of every rank; a failure on any rank prints
# "vlasov-tf: rank r of P failed: ..." and aborts the whole job with a non-zero exit code)
#     out/<job name>-<job id>.log
#
# Sites differ: partitions, accounts, module names and the srun --mpi plugin below are examples.

#SBATCH --job-name=vlasov-tf
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=32
#SBATCH --cpus-per-task=1
#SBATCH --time=02:00:00
#SBATCH --output=out/%x-%j.log
# #SBATCH --partition=compute         # site-specific
# #SBATCH --account=my_project        # site-specific

set -euo pipefail

cd "${SLURM_SUBMIT_DIR:-.}"

# --- Software environment (site-specific examples: `module avail` lists what your cluster has) ---
# module purge
# module load openmpi/4.1 python/3.11

# The project's virtual environment (python3.11 -m venv .venv && .venv/bin/pip install -e .).
source .venv/bin/activate

# mpi4py and MPI. `pip install -e .` brings mpi4py with the PyPI `mpich` wheel: fine on one node, but
# across nodes it knows nothing of the cluster's interconnect (InfiniBand, Slingshot) or of srun.
# Rebuild mpi4py once against the cluster's MPI (from the module loaded above), on a login node:
#
#     pip uninstall -y mpich mpi4py
#     MPICC=mpicc pip install --no-binary=mpi4py --no-cache-dir mpi4py
#
# and check that it picked the cluster's library (Open MPI, Cray MPICH, Intel MPI ... not "MPICH 5.x"
# from the wheel):
#
#     python -c "from mpi4py import MPI; print(MPI.Get_library_version())"

# One thread per rank: ranks are placed one per core (--cpus-per-task=1). Without these, every rank
# would start a thread per core for the kernel sums and for BLAS, and the node would be oversubscribed.
export VLASOV_TF_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

CASE=${CASE:-cases/sphere_collapse.toml}
if [[ -n "${RESUME_DIR:-}" ]]; then
    RUN_DIR=$RESUME_DIR
    RESUME=--resume
else
    RUN_DIR=out/$SLURM_JOB_ID
    RESUME=
fi
mkdir -p "$RUN_DIR"

# --- Sphere meshes, serially, before the parallel job ---
# Levels 0-2 are in the repository; 3 and 4 are built on demand (15 s and about a minute). The build
# uses FiPy and gmsh, and FiPy cannot run under mpiexec/srun with several ranks: build them here, in
# the batch shell (one process on the first node), never inside srun. A parallel run only reads the
# files. Build the levels that the case's [grid] resolutions ask for beyond 2 (this example builds
# level 3; sphere_collapse itself needs only 0 and 1, which are committed).
# $VLASOV_TF_MESHES, if set, is where the meshes are (default: the repository's meshes/).
MESHES=${VLASOV_TF_MESHES:-meshes}
for level in 3; do
    if [[ ! -f "$MESHES/sphere_L$level.h5" ]]; then
        vlasov-tf mesh --level "$level"
    fi
done

echo "job $SLURM_JOB_ID: $SLURM_NTASKS ranks on $SLURM_JOB_NUM_NODES nodes, case $CASE, output $RUN_DIR"
python -c "from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])"

# --- The parallel run: every solver of the case on all $SLURM_NTASKS ranks ---
# srun starts the ranks; the PMI plugin must match the MPI that mpi4py was built against
# (`srun --mpi=list` shows the choices; Open MPI 4: usually pmix; MPICH builds: pmi2 or pmix).
srun vlasov-tf run "$CASE" --out "$RUN_DIR" ${RESUME:+"$RESUME"}
# srun --mpi=pmix vlasov-tf run "$CASE" --out "$RUN_DIR" ${RESUME:+"$RESUME"}
#
# The mpiexec alternative (when srun cannot launch this MPI): the launcher reads the allocation.
# mpiexec -n "$SLURM_NTASKS" vlasov-tf run "$CASE" --out "$RUN_DIR" ${RESUME:+"$RESUME"}

echo "run file: $RUN_DIR/<the case's name>.h5, written by rank 0 (plot: vlasov-tf plot $RUN_DIR/<name>.h5)"
