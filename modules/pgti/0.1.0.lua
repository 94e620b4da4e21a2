-- -*- lua -*-
-- Lmod module file of pgti 0.1.0:  module use <dir containing pgti/> && module load pgti
--
-- Works from a checkout (modules/pgti/0.1.0.lua: the checkout's virtual environment, .venv or
-- $PGTI_VENV) and from an installation prefix (`bash env/setup.sh --prefix DIR` writes this
-- file as DIR/modulefiles/pgti/0.1.0.lua with DIR filled in below, and DIR/bin/pgti).
--
-- The site's MPI and CUDA modules are loaded first when named (nothing is loaded otherwise):
--   PGTI_MPI_MODULE / PGTI_CUDA_MODULE   in the environment (set but empty: load none), or
--   mpi = ... / cuda = ...               in a site file: $PGTI_MODULE_SITE_FILE, else
--                                        modules/site.conf of the checkout or
--                                        modulefiles/site.conf of the prefix
-- Each value is one or more module names separated by spaces, e.g. "cray-mpich" or
-- "PrgEnv-gnu cray-mpich".

local version = "0.1.0"
local here = myFileName()
local root = nil  -- @PGTI_ROOT@ (env/setup.sh --prefix writes the installation prefix here)
root = root or pathJoin(here:match("^(.*)/[^/]+/[^/]+/[^/]+$") or ".")

local function site_file()
  local named = os.getenv("PGTI_MODULE_SITE_FILE")
  if named then return named end
  local checkout = pathJoin(root, "modules/site.conf")
  if isFile(checkout) then return checkout end
  return pathJoin(root, "modulefiles/site.conf")
end

help([[
pgti ]] .. version .. [[ - memory-efficient distributed training of spatiotemporal GNNs
(DCRNN, A3T-GCN, Graph WaveNet) with index-batching, node-shared MPI memory and Horovod.

  pgti --help                          the commands
  pgti train --config FILE --dry-run   validate a config and print the plan
  sbatch $PGTI_JOBS/slurm/train.sbatch $PGTI_JOBS/configs/demo.toml   (Slurm)
  qsub -v PGTI_CONFIG=... $PGTI_JOBS/pbs/train.pbs                    (PBS Pro)

Sets PGTI_HOME (the installation), PGTI_JOBS (job scripts and configs) and puts pgti on
PATH; loads the site's MPI/CUDA modules named by PGTI_MPI_MODULE / PGTI_CUDA_MODULE or the
site file (]] .. site_file() .. [[).
]])

whatis("Name: pgti")
whatis("Version: " .. version)
whatis("Category: machine learning, HPC")
whatis("Description: memory-efficient distributed training of spatiotemporal GNNs (MPI, Horovod)")
whatis("URL: https://arxiv.org/abs/2507.11683 (PGT-I, the reference pgti reproduces)")

-- The site's MPI/CUDA modules: environment first, then the site file.
local function site_setting(key, env_name)
  local value = os.getenv(env_name)
  if value ~= nil then return value end
  local fh = io.open(site_file(), "r")
  if fh == nil then return "" end
  local found = ""
  for line in fh:lines() do
    local k, v = line:match("^%s*([%w_]+)%s*=%s*(.-)%s*$")
    if k == key then found = v end
  end
  fh:close()
  return found
end
for _, spec in ipairs({ {"mpi", "PGTI_MPI_MODULE"}, {"cuda", "PGTI_CUDA_MODULE"} }) do
  for name in string.gmatch(site_setting(spec[1], spec[2]), "%S+") do
    depends_on(name)
  end
end

-- The installation: a prefix has bin/pgti; a checkout has its virtual environment.
local bin = pathJoin(root, "bin")
if not isFile(pathJoin(bin, "pgti")) then
  bin = pathJoin(os.getenv("PGTI_VENV") or pathJoin(root, ".venv"), "bin")
  if mode() == "load" and not isFile(pathJoin(bin, "pgti")) then
    LmodError("pgti: no installation at " .. root .. " (expected bin/pgti or .venv/bin/pgti);" ..
              " run: bash env/setup.sh [--prefix DIR]")
  end
  if isFile(pathJoin(bin, "mpicc")) then
    setenv("OMPI_MCA_osc", "^ucx")  -- the PyPI Open MPI wheel, as env/activate.sh does
  end
end
setenv("PGTI_HOME", root)
local jobs = pathJoin(root, "share/pgti/jobs")
if not isDir(jobs) then jobs = pathJoin(root, "jobs") end
setenv("PGTI_JOBS", jobs)
prepend_path("PATH", bin)
