# shellcheck shell=bash
# pgti site settings: a generic Linux GPU or CPU cluster. A STARTING POINT, not a tested
# configuration: copy it to env/sites/<your-site>.sh and adapt the module names and network
# settings to your machine. Source it
#   - before building:      . env/sites/generic.sh && bash env/setup.sh [--prefix DIR]
#   - in every job:         PGTI_SITE=$PWD/env/sites/generic.sh sbatch jobs/slurm/train.sbatch ...
#                           qsub -v PGTI_SITE=$PWD/env/sites/generic.sh,PGTI_CONFIG=... jobs/pbs/train.pbs
# (the job scripts source $PGTI_SITE before they load pgti).
#
# What a site file sets:
#   1. the site's compiler/MPI/CUDA modules (env/setup.sh then builds mpi4py's and Horovod's
#      MPI parts against that MPI: it uses any `mpicc` on PATH instead of the PyPI Open MPI);
#   2. Horovod build flags: HOROVOD_GPU_OPERATIONS=NCCL on GPU machines (allreduce through
#      NCCL; MPI only for coordination); the wheel cache key includes it;
#   3. NCCL / libfabric (OFI) variables for the interconnect;
#   4. pgti's launcher settings for jobs/slurm/train.sbatch and jobs/pbs/train.pbs.

# 1. Modules (space-separated; only if this shell has `module`, e.g. after Lmod's init).
PGTI_SITE_MODULES="${PGTI_SITE_MODULES:-}"          # e.g. "gcc/12 openmpi/4.1 cuda/12.4"
if [ -n "$PGTI_SITE_MODULES" ]; then
  if type module >/dev/null 2>&1; then
    for _pgti_m in $PGTI_SITE_MODULES; do module load "$_pgti_m"; done
    unset _pgti_m
  else
    echo "pgti site: no module command here; not loading $PGTI_SITE_MODULES" >&2
  fi
fi

# 2. Horovod: NCCL for GPU allreduce when CUDA is there, MPI always, PyTorch only.
export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1
if command -v nvcc >/dev/null 2>&1 || [ -n "${CUDA_HOME:-}" ]; then
  export HOROVOD_GPU_OPERATIONS=NCCL
  export HOROVOD_CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}"
  # export HOROVOD_NCCL_HOME=/path/to/nccl       # when NCCL is not inside the CUDA toolkit
fi

# 3. NCCL: warnings only; pick the network interface if NCCL guesses wrong.
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
# export NCCL_SOCKET_IFNAME=ib0                  # the interface for NCCL's bootstrap / sockets
# export NCCL_IB_HCA=mlx5                         # InfiniBand: which HCAs NCCL uses

# 4. pgti's job scripts.
export PGTI_LAUNCHER="${PGTI_LAUNCHER:-srun}"     # Slurm: srun (or mpirun inside the allocation)
export PGTI_SRUN_MPI="${PGTI_SRUN_MPI-pmix}"      # srun --mpi=...; "" = the site's MpiDefault
export PGTI_GPU_BIND="${PGTI_GPU_BIND-none}"      # all GPUs visible, pgti takes cuda:<local rank>
