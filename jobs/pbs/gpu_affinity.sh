#!/bin/bash
# Give each MPI rank one GPU of its node, then run the command:
#   mpiexec ... jobs/pbs/gpu_affinity.sh pgti train ...
#
# The local rank comes from whichever launcher started us: Cray PALS (PALS_LOCAL_RANKID),
# Open MPI (OMPI_COMM_WORLD_LOCAL_RANK), MPICH/Hydra (MPI_LOCALRANKID), MVAPICH
# (MV2_COMM_WORLD_LOCAL_RANK) or Slurm (SLURM_LOCALID). The GPUs are those already visible
# (CUDA_VISIBLE_DEVICES, if the scheduler set it) or `nvidia-smi -L`, or PGTI_GPUS_PER_NODE.
# PGTI_GPU_MAP reorders them: local rank i gets the i-th entry (Polaris: "3,2,1,0", so rank 0,
# which PALS binds to cores 0-7, gets GPU 3, the one attached to those cores' NUMA domain).
# Without GPUs the command runs unchanged (CPU runs, tests).
local_rank="${PALS_LOCAL_RANKID:-${OMPI_COMM_WORLD_LOCAL_RANK:-${MPI_LOCALRANKID:-${MV2_COMM_WORLD_LOCAL_RANK:-${SLURM_LOCALID:-0}}}}}"

if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  IFS=, read -r -a gpus <<< "$CUDA_VISIBLE_DEVICES"
elif [ -n "${PGTI_GPUS_PER_NODE:-}" ]; then
  mapfile -t gpus < <(seq 0 $((PGTI_GPUS_PER_NODE - 1)))
elif command -v nvidia-smi >/dev/null 2>&1; then
  mapfile -t gpus < <(nvidia-smi -L 2>/dev/null | awk '/^GPU/ {print NR - 1}')
else
  gpus=()
fi
if [ -n "${PGTI_GPU_MAP:-}" ] && [ ${#gpus[@]} -gt 0 ]; then
  IFS=, read -r -a order <<< "$PGTI_GPU_MAP"
  mapped=()
  for i in "${order[@]}"; do
    if [ "$i" -lt ${#gpus[@]} ]; then mapped+=("${gpus[$i]}"); fi
  done
  gpus=("${mapped[@]}")
fi
if [ ${#gpus[@]} -gt 0 ]; then
  export CUDA_VISIBLE_DEVICES="${gpus[$((local_rank % ${#gpus[@]}))]}"
fi
if [ -n "${PGTI_AFFINITY_VERBOSE:-}" ]; then
  echo "[gpu_affinity] host $(hostname) local rank $local_rank: CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-<unset>}" >&2
fi
exec "$@"
