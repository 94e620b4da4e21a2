# shellcheck shell=bash
# pgti site settings: NERSC Perlmutter GPU nodes (HPE Cray EX, Slurm, 4 x NVIDIA A100 40/80 GB
# and one 64-core AMD EPYC Milan per node, Slingshot 11, Cray MPICH).
# A STARTING POINT: module names change with Perlmutter's programming environment; check them
# against NERSC's current documentation (docs.nersc.gov) before relying on them.
#
#   . env/sites/perlmutter.sh && bash env/setup.sh --prefix $CFS/PROJECT/sw/pgti
#   PGTI_SITE=$PWD/env/sites/perlmutter.sh sbatch -A PROJECT_g -C gpu -q regular -N 32 \
#       --ntasks-per-node=4 --gpus-per-node=4 -c 32 -t 06:00:00 \
#       jobs/slurm/train.sbatch jobs/configs/pems.toml runs/pems

# 1. Modules: GNU programming environment, Cray MPICH, CUDA toolkit, the NCCL module.
if type module >/dev/null 2>&1; then
  module load PrgEnv-gnu cray-mpich cudatoolkit craype-accel-nvidia80
  module load nccl 2>/dev/null || true
else
  echo "pgti site perlmutter: no module command in this shell (source Lmod's init first)" >&2
fi
export MPICC="${MPICC:-cc}"                       # Cray's compiler wrapper links Cray MPICH

# 2. Horovod: NCCL for the allreduce on the A100s, Cray MPICH for coordination.
export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1
export HOROVOD_GPU_OPERATIONS=NCCL
export HOROVOD_CUDA_HOME="${CUDA_HOME:-}"
if [ -n "${NCCL_DIR:-}" ]; then export HOROVOD_NCCL_HOME="$NCCL_DIR"; fi

# 3. NCCL over Slingshot: NERSC's nccl module ships the AWS OFI plugin and sets most of
#    these; the values below are the usual ones for the libfabric cxi provider.
export NCCL_NET="AWS Libfabric"
export NCCL_NET_GDR_LEVEL=PHB
export NCCL_CROSS_NIC=1
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
export FI_CXI_DISABLE_HOST_REGISTER=1
export FI_MR_CACHE_MONITOR=userfaultfd
export MPICH_GPU_SUPPORT_ENABLED=0                # Horovod sends GPU buffers through NCCL, not MPI

# 4. pgti's Slurm script: srun with Cray's PMI (cray_shasta), every task sees its node's
#    four GPUs and pgti takes cuda:<local rank> (--gpu-bind=none keeps CUDA IPC between the
#    node's ranks working for NCCL). Give each task a quarter of the cores: sbatch -c 32.
export PGTI_LAUNCHER=srun PGTI_SRUN_MPI=cray_shasta PGTI_GPU_BIND=none
