"""Helpers every test suite may import (`from testlib import run_mpi`): real MPI launches,
`pgti` command lines, small datasets, waiting for a run's files and logs, and the final
parameters of a run with their bit-for-bit comparison."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- launching


def mpirun_command(np_: int) -> list[str]:
    exe = shutil.which("mpirun") or shutil.which("mpiexec")
    if exe is None:
        pytest.skip("no mpirun on PATH (run bash env/setup.sh)")
    cmd = [exe, "-np", str(np_)]
    if np_ > (os.cpu_count() or 1):
        cmd.append("--oversubscribe")
    return cmd


def run_mpi(np_: int, args: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Launch `python ARGS` under a real `mpirun -np N`."""
    return subprocess.run(mpirun_command(np_) + [sys.executable, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, **kw)


def run_mpi_nodes(hosts, np_: int, per_node: int | None, args: list, timeout: float = 120,
                  env: dict | None = None) -> subprocess.CompletedProcess:
    """`python ARGS` with `np_` ranks, `per_node` on each node (None: all on this one host).
    Nodes are real hosts when `hosts` (the `virtual_hosts` fixture) is a cluster; where this
    machine cannot make one (None), PGTI_RANKS_PER_NODE simulates them on this host."""
    env = dict(os.environ if env is None else env)
    env.pop("PGTI_RANKS_PER_NODE", None)
    if per_node is not None and hosts is not None:
        return hosts.mpirun(np_, [sys.executable, *args], timeout=timeout, per_host=per_node, env=env)
    if per_node is not None:
        env["PGTI_RANKS_PER_NODE"] = str(per_node)
    return run_mpi(np_, args, timeout=timeout, env=env)


def pgti_command(*args) -> list[str]:
    """`python -m pgti.cli ARGS` (this interpreter, this checkout's package)."""
    return [sys.executable, "-m", "pgti.cli", *map(str, args)]


def run_pgti(*args, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run `pgti ARGS` in a child process; text output captured."""
    return subprocess.run(pgti_command(*args), capture_output=True, text=True, timeout=timeout, **kw)


def train_command(data: Path, run_dir: Path, *settings: str) -> list[str]:
    """`pgti train --run-dir RUN_DIR --set data.path=DATA` and one `--set ITEM` per setting;
    settings that start with "--" (`--resume=auto`) pass through as they are."""
    cmd = pgti_command("train", "--run-dir", run_dir, "--set", f"data.path={data}")
    for item in settings:
        cmd += [item] if item.startswith("--") else ["--set", item]
    return cmd


def run_into_closed_pipe(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `args` with a stdout whose reader is gone (`... | head` after head ended): the first
    write fails with EPIPE. Returns the finished process (stderr captured)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([str(a) for a in args], stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=timeout)
    finally:
        os.close(write)


# --------------------------------------------------------------------------- datasets


def write_random_dataset(path: Path, T: int = 500, N: int = 7, C: int = 2, seed: int = 0, missing: float = 0.05,
                         interval: int = 300, start: int = 1_330_560_000, nan_at_step: int | None = None,
                         **kw) -> Path:
    """A small random pgti dataset at `path`: exact float32 values in [1, 70), a fraction
    `missing` of them 0.0, a random weighted graph, nodes `s{i}`, channels `c{i}`; optionally a
    NaN at one step. `kw` goes to `write_dataset` (e.g. `chunk_steps`)."""
    from pgti.data.format import write_dataset

    rng = np.random.default_rng(seed)
    signals = rng.uniform(1.0, 70.0, size=(T, N, C)).astype(np.float32)
    signals[rng.random((T, N, C)) < missing] = 0.0
    if nan_at_step is not None:
        signals[nan_at_step, 1, 0] = np.nan
    src = rng.integers(0, N, 3 * N)
    dst = rng.integers(0, N, 3 * N)
    edge_weight = rng.uniform(0.1, 1.0, src.size).astype(np.float32)
    return write_dataset(path, signals, start + interval * np.arange(T, dtype=np.int64),
                         node_ids=[f"s{i}" for i in range(N)], channels=[f"c{i}" for i in range(C)],
                         interval_seconds=interval, edge_index=np.stack([src, dst]), edge_weight=edge_weight, **kw)


def synth_dataset(path: Path, num_nodes: int, num_steps: int, seed: int) -> Path:
    """A synthetic traffic dataset (`pgti.data.synth`) at `path`, written quietly."""
    from pgti.data.synth import SynthSpec, generate

    generate(SynthSpec(num_nodes=num_nodes, num_steps=num_steps, seed=seed), path, progress=False)
    return path


# --------------------------------------------------------------------------- waiting


def wait_until(ready, what, proc: subprocess.Popen | None = None, timeout: float = 120,
               poll: float = 0.1, check=None):
    """Call `ready()` until it returns something true and return that. Fails (AssertionError,
    with `what`: a string, or a function that describes the state at the failure) on timeout
    or, with what the process printed, if `proc` ends first; `check()`, when given, runs on
    every round and may fail on its own (e.g. a batch job that ended)."""
    describe = what if callable(what) else lambda: what
    deadline = time.monotonic() + timeout
    while True:
        found = ready()
        if found:
            return found
        if check is not None:
            check()
        if proc is not None and proc.poll() is not None:
            printed = "".join((s.read() or "")[-3000:] for s in (proc.stdout, proc.stderr) if s is not None)
            raise AssertionError(f"the process ended (status {proc.returncode}) before {describe()}:\n{printed}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {describe()}")
        time.sleep(poll)


def wait_for_files(pattern: Path, proc: subprocess.Popen | None = None, timeout: float = 120,
                   poll: float = 0.01, what: str = "") -> list[Path]:
    """Wait until files match `pattern` (a path whose last part may hold glob characters,
    `run/checkpoints/step-*.pt`); returns them sorted. See `wait_until` for the failures."""
    pattern = Path(pattern)
    return wait_until(lambda: sorted(pattern.parent.glob(pattern.name)), f"{pattern} {what}".strip(), proc,
                      timeout, poll)


def wait_for_log(path: Path, pattern: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until the file at `path` matches the regex `pattern` while `proc` runs; fail with
    what the process printed if it ends first, or on timeout."""
    wait_until(lambda: path.exists() and re.search(pattern, path.read_text()), f"{pattern!r} in {path}", proc,
               timeout)


def signal_after_log(proc: subprocess.Popen, path: Path, pattern: str, send, timeout: float = 120) -> str:
    """Once the log at `path` matches `pattern`, call `send()` (deliver a signal), wait for
    `proc` to end and return its output; `proc` is killed if anything fails on the way."""
    try:
        wait_for_log(path, pattern, proc)
        send()
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return out


def start_lock_holder(run_dir: Path, **env) -> subprocess.Popen:
    """A real process that takes `run_dir`'s lock the way `pgti train`'s rank 0 does
    (`pgti.train.lock.hold`) and keeps it until killed; returns once it holds it. `env`: extra
    variables (SLURM_JOB_ID, PGTI_RUN_LOCK, PGTI_LOCK_HEARTBEAT)."""
    code = ("import sys, time\nfrom pgti.train.lock import hold\nhold(sys.argv[1])\nprint('held', flush=True)\n"
            "time.sleep(3600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **{k: str(v) for k, v in env.items()}})
    line = proc.stdout.readline()
    if line.strip() != "held":
        proc.kill()
        raise AssertionError(f"the lock holder did not take the lock: {line}{proc.stderr.read()[-2000:]}")
    return proc


# --------------------------------------------------------------------------- what a run left


def ranks_agree(run_dir: Path, world: int) -> str | None:
    """The parameter digest that a run's train.log reports as identical on all `world` ranks
    (None when it reports no such agreement)."""
    log = (Path(run_dir) / "train.log").read_text()
    found = re.search(rf"parameters identical on all {world} ranks \(sha256 ([0-9a-f]+)\)", log)
    return found.group(1) if found else None


def rank_pid(run_dir: Path, rank: int) -> int:
    """The pid of the rank process of `pgti train --run-dir run_dir` with this world rank
    (on any host of this machine: the test hosts share its process table)."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(run_dir) in (entry / "cmdline").read_text():
                environ = (entry / "environ").read_bytes().split(b"\0")
                if f"OMPI_COMM_WORLD_RANK={rank}".encode() in environ:
                    return int(entry.name)
        except OSError:
            continue
    raise AssertionError(f"no rank {rank} process for {run_dir}")


def latest_checkpoint(run_dir: Path) -> dict:
    """The newest checkpoint of a run directory (its `checkpoints/latest`), loaded."""
    from pgti.train.checkpoint import CheckpointManager, load_checkpoint

    path = CheckpointManager(Path(run_dir) / "checkpoints").latest()
    assert path is not None, f"{run_dir} has no checkpoint"
    return load_checkpoint(path)


def final_params(run_dir: Path) -> dict:
    """The model parameters (state dict) of a run's newest checkpoint."""
    return latest_checkpoint(run_dir)["model"]


def metrics_rows(run_dir: Path, keys=("epoch", "train_loss", "val")) -> list[dict]:
    """The rows of a run's metrics.jsonl, each cut down to `keys` (those that depend only on
    the computation: no timings, no memory)."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k in keys} for line in lines]


def _state_difference(a: dict, b: dict, close) -> list[str]:
    """What differs between two state dicts, one line per tensor; [] when `close` holds for all."""
    import torch

    lines = [f"{k}: only in the first" for k in a if k not in b] + [f"{k}: only in the second" for k in b if k not in a]
    for k in (k for k in a if k in b):
        x, y = a[k], b[k]
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
            if x != y:
                lines.append(f"{k}: {x!r} != {y!r}")
        elif x.shape != y.shape or x.dtype != y.dtype:
            lines.append(f"{k}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}")
        elif not close(x, y):
            diff = (x.double() - y.double()).abs()
            lines.append(f"{k}: {int((x != y).sum())} of {x.numel()} values differ, max |difference| "
                         f"{float(diff.max()):.3g} (max |value| {float(x.double().abs().max()):.3g})")
    return lines


def assert_bitwise_equal(a: dict, b: dict, what: str = "parameters") -> None:
    """Two state dicts (e.g. `final_params` of two runs) hold the same keys and bit-for-bit the
    same tensors; the failure names every tensor that differs and by how much."""
    import torch

    differ = _state_difference(a, b, torch.equal)
    assert not differ, f"{what} differ in {len(differ)} of {len(a)} tensors:\n  " + "\n  ".join(differ)


def assert_state_close(a: dict, b: dict, rtol: float, atol: float, what: str = "parameters") -> None:
    """Like `assert_bitwise_equal`, within `torch.allclose(rtol, atol)` per tensor."""
    import torch

    differ = _state_difference(a, b, lambda x, y: torch.allclose(x, y, rtol=rtol, atol=atol))
    assert not differ, (f"{what} differ beyond rtol={rtol}, atol={atol} in {len(differ)} of {len(a)} tensors:\n  "
                        + "\n  ".join(differ))
