"""`module load pgti` with Debian's Lmod, for the Lua and the Tcl module file, and the module
files `env/setup.sh --prefix DIR` writes.

Every check runs in a fresh non-interactive bash that sources Lmod's init (as a batch job
must) with a clean PATH, so `pgti` can only come from the module.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hpc_helpers import clean_env, lmod_shell

from testlib import REPO

FLAVOURS = {"lua": REPO / "modules", "tcl": REPO / "modules" / "tcl"}
VENV = Path(sys.prefix)  # the environment this suite runs in (REPO/.venv or $PGTI_VENV)


def fake_site_modules(root: Path) -> Path:
    """A module tree with a site 'MPI' (Lua) and 'CUDA' (Tcl) module that mark themselves loaded."""
    (root / "fakempi").mkdir(parents=True)
    (root / "fakempi" / "5.0.lua").write_text('setenv("FAKEMPI_LOADED", "yes")\n')
    (root / "fakecuda").mkdir()
    (root / "fakecuda" / "12.2").write_text("#%Module1.0\nsetenv FAKECUDA_LOADED yes\n")
    return root


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_module_load_puts_pgti_on_path(hpc_tools, flavour):
    env = clean_env(PGTI_VENV=str(VENV))
    proc = lmod_shell(f"module use {FLAVOURS[flavour]} && module load pgti && command -v pgti && pgti --version "
                      "&& echo HOME=$PGTI_HOME JOBS=$PGTI_JOBS && module -t list 2>&1 && module unload pgti "
                      "&& echo after=${PGTI_HOME:-unset} && (command -v pgti || echo no-pgti)", env=env)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert f"{VENV}/bin/pgti" in out and "pgti 0.1.0" in out
    assert f"HOME={REPO} JOBS={REPO / 'jobs'}" in out
    assert "pgti/0.1.0" in out
    assert "after=unset" in out and "no-pgti" in out  # unload undoes it


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_module_help_and_whatis(hpc_tools, flavour):
    proc = lmod_shell(f"module use {FLAVOURS[flavour]} && module help pgti && module whatis pgti",
                      env=clean_env(PGTI_VENV=str(VENV)))
    text = proc.stdout + proc.stderr  # Lmod prints both to stderr
    assert proc.returncode == 0, text
    assert "spatiotemporal GNNs" in text and "PGTI_MPI_MODULE" in text
    assert "Name: pgti" in text and "Version: 0.1.0" in text


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("how", ["site-file", "environment", "none"])
def test_module_loads_the_sites_mpi_and_cuda(hpc_tools, flavour, how, tmp_path):
    site = fake_site_modules(tmp_path / "site-modules")
    env = clean_env(PGTI_VENV=str(VENV))
    if how == "site-file":
        (tmp_path / "site.conf").write_text("# our cluster\nmpi = fakempi\ncuda = fakecuda/12.2\n")
        env["PGTI_MODULE_SITE_FILE"] = str(tmp_path / "site.conf")
    elif how == "environment":
        env.update(PGTI_MPI_MODULE="fakempi", PGTI_CUDA_MODULE="fakecuda")
    proc = lmod_shell(f"module use {site} && module use {FLAVOURS[flavour]} && module load pgti && "
                      "echo mpi=${FAKEMPI_LOADED:-no} cuda=${FAKECUDA_LOADED:-no} && pgti --version", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = "mpi=no cuda=no" if how == "none" else "mpi=yes cuda=yes"
    assert expected in proc.stdout, proc.stdout + proc.stderr


def test_module_avail_lists_pgti_once(hpc_tools):
    """`module use modules` must not also offer the Tcl twin as "tcl/pgti" (hidden by its .modulerc.lua)."""
    proc = lmod_shell(f"module use {FLAVOURS['lua']} && module -t avail", env=clean_env())
    listed = [line for line in proc.stderr.splitlines() if "pgti" in line]
    assert listed == ["pgti/", "pgti/0.1.0"], proc.stderr


def test_module_names_what_is_missing(hpc_tools, tmp_path):
    proc = lmod_shell(f"module use {FLAVOURS['lua']} && module load pgti",
                      env=clean_env(PGTI_VENV=str(tmp_path / "no-venv")))
    assert proc.returncode != 0
    assert "no installation at" in proc.stderr and "env/setup.sh" in proc.stderr


@pytest.mark.slow
def test_setup_prefix_writes_working_module_files(hpc_tools, tmp_path):
    """`env/setup.sh --prefix DIR --venv <this venv>`: the fast path (the venv is up to date, so
    nothing is rebuilt) plus everything --prefix writes: bin/pgti, the Lua and Tcl module files
    with DIR written in, site.conf (kept when edited), share/pgti/jobs. What it does not cover:
    the venv build inside DIR (DIR/venv, pgti copied in), which takes minutes; that path shares
    every step with a plain `env/setup.sh` except the non-editable `pip install`."""
    import os
    import subprocess

    # setup.sh sees what tests/run.sh gave it (the caller's PATH, before activation), so its
    # stamp matches and it takes the fast path; a stale environment is simply brought up to date.
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != str(VENV / "bin"))
    prefix = tmp_path / "sw" / "pgti"
    cmd = ["bash", str(REPO / "env" / "setup.sh"), "--prefix", str(prefix), "--venv", str(VENV)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"module use {prefix}/modulefiles && module load pgti" in proc.stdout
    for path in ("bin/pgti", "modulefiles/pgti/0.1.0.lua", "modulefiles/tcl/pgti/0.1.0", "modulefiles/site.conf",
                 "share/pgti/jobs/slurm/train.sbatch", "share/pgti/jobs/pbs/train.pbs",
                 "share/pgti/jobs/configs/pems.toml"):
        assert (prefix / path).is_file(), path
    assert f'local root = "{prefix}"' in (prefix / "modulefiles/pgti/0.1.0.lua").read_text()

    # The admin names the site's modules once; a second run keeps that and changes nothing else.
    site = fake_site_modules(tmp_path / "site-modules")
    (prefix / "modulefiles/site.conf").write_text("mpi = fakempi\ncuda =\n")
    before = {p: p.stat().st_mtime_ns for p in prefix.rglob("*") if p.is_file()}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is up to date" in proc.stdout  # the fast path
    assert {p: p.stat().st_mtime_ns for p in prefix.rglob("*") if p.is_file()} == before

    # Both module files work from anywhere (here: copied to a central module tree, as sites do).
    central = tmp_path / "central"
    (central / "lua" / "pgti").mkdir(parents=True)
    (central / "tcl" / "pgti").mkdir(parents=True)
    (central / "lua" / "pgti" / "0.1.0.lua").write_text((prefix / "modulefiles/pgti/0.1.0.lua").read_text())
    (central / "tcl" / "pgti" / "0.1.0").write_text((prefix / "modulefiles/tcl/pgti/0.1.0").read_text())
    for modules in (prefix / "modulefiles", prefix / "modulefiles" / "tcl", central / "lua", central / "tcl"):
        proc = lmod_shell(f"module use {site} && module use {modules} && module load pgti && command -v pgti "
                          "&& pgti --version && echo HOME=$PGTI_HOME JOBS=$PGTI_JOBS mpi=${FAKEMPI_LOADED:-no}",
                          env=clean_env())
        assert proc.returncode == 0, (modules, proc.stdout + proc.stderr)
        assert f"{prefix}/bin/pgti" in proc.stdout and "pgti 0.1.0" in proc.stdout, proc.stdout
        assert f"HOME={prefix} JOBS={prefix}/share/pgti/jobs mpi=yes" in proc.stdout, proc.stdout
