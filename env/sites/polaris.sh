# shellcheck shell=bash
# pgti site settings: ALCF Polaris (HPE Apollo 6500, PBS Pro, 4 x NVIDIA A100 40 GB and one
# 32-core AMD EPYC Milan per node, Slingshot 11, Cray MPICH / PALS mpiexec).
# A STARTING POINT: module names and paths change with Polaris' software stack; check them
# against ALCF's current documentation (docs.alcf.anl.gov/polaris) before relying on them.
#
#   . env/sites/polaris.sh && bash env/setup.sh --prefix /eagle/PROJECT/sw/pgti
#   qsub -A PROJECT -q prod -l select=32:system=polaris -l walltime=06:00:00 \
#        -v PGTI_SITE=$PWD/env/sites/polaris.sh,PGTI_CONFIG=jobs/configs/pems.toml jobs/pbs/train.pbs

# 1. Modules: the GNU programming environment, Cray MPICH, a CUDA toolkit for Horovod's build.
if type module >/dev/null 2>&1; then
  module use /soft/modulefiles 2>/dev/null || true
  module load PrgEnv-gnu 2>/dev/null || module swap PrgEnv-nvhpc PrgEnv-gnu
  module load cray-mpich cudatoolkit-standalone craype-accel-nvidia80
else
  echo "pgti site polaris: no module command in this shell (source Lmod's init first)" >&2
fi
export MPICC="${MPICC:-cc}"                       # Cray's compiler wrapper links Cray MPICH

# 2. Horovod: NCCL for the allreduce on the A100s, Cray MPICH for coordination.
export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1
export HOROVOD_GPU_OPERATIONS=NCCL
export HOROVOD_CUDA_HOME="${CUDA_HOME:-${NVIDIA_PATH:-}}"
# export HOROVOD_NCCL_HOME=/soft/libraries/nccl/<version>   # if NCCL is not in the CUDA toolkit

# 3. NCCL over Slingshot through the AWS OFI plugin (libfabric cxi provider), as ALCF
#    recommends for multi-node NCCL; the plugin's path is an example.
export NCCL_NET="AWS Libfabric"
export NCCL_NET_GDR_LEVEL=PHB
export NCCL_CROSS_NIC=1
export NCCL_COLLNET_ENABLE=1
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
export FI_CXI_DISABLE_HOST_REGISTER=1
export FI_MR_CACHE_MONITOR=userfaultfd
export FI_CXI_DEFAULT_CQ_SIZE=131072
_pgti_ofi=/soft/libraries/aws-ofi-nccl/v1.9.1-aws/lib  # check `ls /soft/libraries/aws-ofi-nccl`
if [ -d "$_pgti_ofi" ]; then export LD_LIBRARY_PATH="$_pgti_ofi:${LD_LIBRARY_PATH:-}"; fi
unset _pgti_ofi
export MPICH_GPU_SUPPORT_ENABLED=0                # Horovod sends GPU buffers through NCCL, not MPI

# 4. pgti's PBS script: 4 ranks per node, 8 cores each, PALS binding; GPU 3 is the one
#    nearest to cores 0-7, so local rank 0 gets GPU 3 (ALCF's set_affinity_gpu_polaris.sh).
export PGTI_PPN=4 PGTI_DEPTH=8 PGTI_MPIEXEC_FLAVOR=pals PGTI_GPU_MAP=3,2,1,0
