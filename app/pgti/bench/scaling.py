"""Scaling: measured strong/weak scaling of `pgti train` under mpirun, and measured allreduce.

Measured here (`measure_scaling`): `mpirun -np W python -m pgti.cli train ...` with dcrnn-pgt on
a synthetic dataset for W = 1, 2, 4 ranks, `train.max_steps` steps, reading samples/s from the
run's metrics.jsonl (`samples_per_s`: steps x per-rank batch x W / the epoch's wall time, the
first step included). Strong scaling keeps the global batch at 64 (64/W per rank); weak scaling
keeps 64 per rank (64 W global). Ranks beyond the cores are oversubscribed (`--oversubscribe`):
on a 2-core machine W = 4 measures contention, not scaling.

Measured allreduce (`measure_allreduce`): `pgti.bench.allreduce_worker` under `mpirun -np 2`,
float32 tensors of the models' parameter counts, per engine (mpi4py, Horovod, gloo), median.
The PeMS projection these measurements feed is `pgti.bench.projection`.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pgti.bench.bounds import at_least, counts
from pgti.errors import UserError
from pgti.outputs import add_force_argument, check_output, write_text_output

MPIRUN_ARGS_ENV = "PGTI_MPIRUN_ARGS"  # extra mpirun arguments, as in the job scripts


def mpirun(ranks: int, hosts: int = 1) -> list[str]:
    """`mpirun -np W` for the benchmarks' own launches.

    hosts > 1: W / hosts ranks on each host (`--map-by ppr:K:node`), over the hosts the launch
    environment gives mpirun: a batch allocation (Slurm, PBS), or a `--hostfile` among the
    arguments of $PGTI_MPIRUN_ARGS, which are appended either way (`--bind-to none`, `--mca ...`)."""
    from pgti.errors import UserError

    exe = shutil.which("mpirun") or shutil.which("mpiexec")
    if exe is None:
        raise RuntimeError("no mpirun on PATH: run `bash env/setup.sh` and `. env/activate.sh`")
    if hosts < 1 or ranks % hosts:
        raise UserError(f"--hosts {hosts}: {ranks} ranks do not split evenly over {hosts} host(s); give rank "
                        "counts that are multiples of --hosts")
    cmd = [exe, "-np", str(ranks)]
    if hosts > 1:
        cmd += ["--map-by", f"ppr:{ranks // hosts}:node"]
    elif ranks > (os.cpu_count() or 1):
        cmd.append("--oversubscribe")
    return cmd + shlex.split(os.environ.get(MPIRUN_ARGS_ENV, ""))


def hosts_for(ranks: int, hosts: int) -> int:
    """The hosts a point of W ranks spreads over: `hosts` when W is a multiple of it, else 1."""
    return hosts if hosts >= 1 and ranks >= hosts and ranks % hosts == 0 else 1


# Open MPI's launcher itself can fail to start, now and then, before any rank runs (PMIx's
# listener race, openpmix/openpmix#112-style; seen once in ~1,000 launches here). Such a launch
# is retried once; a failure of the program itself never is.
LAUNCHER_FAILURES = ("The PMIx server's listener thread failed to start",)


def launch(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run an mpirun command line; retry once if mpirun failed to start (see LAUNCHER_FAILURES)."""
    for attempt in (1, 2):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        started = not any(marker in done.stdout + done.stderr for marker in LAUNCHER_FAILURES)
        if done.returncode == 0 or started or attempt == 2:
            return done
        time.sleep(1.0)
    return done


def train_command(ranks: int, data, per_rank_batch: int, steps: int, run_dir, model: str = "dcrnn-pgt",
                  engine: str = "horovod", hosts: int = 1) -> list[str]:
    sets = [f"data.path={data}", f"model.name={model}", f"train.batch_size={per_rank_batch}",
            f"train.max_steps={steps}", "train.epochs=1", "log.progress=lines", "log.plots=false", "log.tensorboard=false",
            f"dist.engine={engine}", "checkpoint.every_minutes=0", "train.device=cpu"]
    return mpirun(ranks, hosts) + [sys.executable, "-m", "pgti.cli", "train", *[a for s in sets for a in ("--set", s)],
                            "--run-dir", str(run_dir)]


def run_training(ranks: int, data, per_rank_batch: int, steps: int, run_dir, model: str = "dcrnn-pgt",
                 engine: str = "horovod", timeout: float = 900, hosts: int = 1) -> dict:
    """One `pgti train` launch; its last metrics.jsonl row, with the command and wall time."""
    run_dir = Path(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = train_command(ranks, data, per_rank_batch, steps, run_dir, model, engine, hosts)
    began = time.perf_counter()
    done = launch(cmd, timeout)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    row = rows[-1]
    return {"ranks": ranks, "hosts": hosts, "per_rank_batch": per_rank_batch, "global_batch": per_rank_batch * ranks,
            "steps": row["global_step"], "samples_per_s": row["samples_per_s"], "epoch_time_s": row["epoch_time_s"],
            "wall_s": wall, "command": " ".join(map(str, cmd)), "load_average": os.getloadavg()[0]}


def measure_scaling(data, work_dir, ranks=(1, 2, 4), steps: int = 30, repeats: int = 1, global_batch: int = 64,
                    model: str = "dcrnn-pgt", engine: str = "horovod", log=print, hosts: int = 1) -> list[dict]:
    """Strong (global batch fixed) and weak (per-rank batch fixed) runs, repeats interleaved.

    W = 1 is the same run for both (per-rank batch 64) and is launched once per repeat.
    hosts > 1: every point whose W is a multiple of it spreads over that many hosts."""
    plan = []
    for w in ranks:
        if global_batch % w:
            raise ValueError(f"strong scaling: global batch {global_batch} is not divisible by W={w}")
        plan.append(("strong", w, global_batch // w))
        if w > 1:
            plan.append(("weak", w, global_batch))
    runs = []
    for repeat in range(repeats):
        for mode, w, batch in plan:
            on = hosts_for(w, hosts)
            run = run_training(w, data, batch, steps, Path(work_dir) / f"{mode}-w{w}-r{repeat}", model, engine,
                               hosts=on)
            modes = ["strong", "weak"] if w == 1 else [mode]
            for m in modes:
                runs.append({**run, "mode": m, "repeat": repeat})
            layout = f"{on}x{w // on}" if on > 1 else "1 host"
            log(f"  scaling {'/'.join(modes):<11} W={w} ({layout}) batch {batch}/rank: {run['samples_per_s']:8.1f} samples/s "
                f"({run['steps']} steps, {run['wall_s']:.0f} s wall, load {run['load_average']:.1f})")
    return runs


def summarize_scaling(runs: list[dict]) -> list[dict]:
    """Median samples/s per (mode, W) over repeats; speedup and efficiency against W = 1."""
    out = []
    for mode in ("strong", "weak"):
        by_w: dict[int, list[float]] = {}
        for r in runs:
            if r["mode"] == mode:
                by_w.setdefault(r["ranks"], []).append(r["samples_per_s"])
        base = statistics.median(by_w[min(by_w)]) if by_w else None
        for w in sorted(by_w):
            rate = statistics.median(by_w[w])
            speedup = rate / base if base else None
            out.append({"mode": mode, "ranks": w, "samples_per_s": rate, "samples_per_s_runs": by_w[w],
                        "speedup": speedup, "efficiency": speedup / (w / min(by_w)) if speedup else None})
    return out


def measure_allreduce(counts: list[int], ranks: int = 2, repeats: int = 50, inner: int = 10,
                      timeout: float = 600) -> dict:
    cmd = mpirun(ranks) + [sys.executable, "-m", "pgti.bench.allreduce_worker", "--counts",
                           ",".join(map(str, counts)), "--repeats", str(repeats), "--inner", str(inner)]
    done = launch(cmd, timeout)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PGTI_ALLREDUCE ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"allreduce benchmark failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")
    result = json.loads(line[len("PGTI_ALLREDUCE "):])
    result["command"] = " ".join(cmd)
    return result


def main(argv=None) -> int:
    """`python -m pgti.bench.scaling --data FILE [--ranks 1,2,4] [--steps N]`: the measured part alone."""
    import argparse
    import tempfile

    p = argparse.ArgumentParser(prog="python -m pgti.bench.scaling", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--ranks", default="1,2,4")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--hosts", type=int, default=1,
                   help="spread each W that is a multiple of it over this many hosts (--map-by ppr:W/H:node; the "
                        "hosts come from the allocation or a --hostfile in $PGTI_MPIRUN_ARGS)")
    p.add_argument("--json", help="also write the runs and their summary here")
    add_force_argument(p, help="replace an existing --json file")
    p.add_argument("--work-dir", help="where the runs' directories go (default: a temporary directory under "
                                      "$TMPDIR); with --hosts, on a filesystem every host sees")
    args = p.parse_args(argv)
    if args.hosts < 1:
        p.error(f"--hosts {args.hosts}: give 1 or more hosts")
    if args.hosts > 1 and not args.work_dir:
        p.error("--hosts needs --work-dir: the runs' directories must be on a filesystem every host sees "
                "(a node's $TMPDIR is not)")
    try:
        ranks = counts("--ranks", args.ranks)
        at_least("--steps", args.steps)
        at_least("--repeats", args.repeats)
        if args.json:
            check_output(args.json, option="--json", force=args.force, reads=[args.data])
    except UserError as exc:
        p.error(str(exc))
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        runs = measure_scaling(args.data, work, ranks, args.steps, args.repeats, hosts=args.hosts)
    if args.json:
        write_text_output(args.json, json.dumps({"runs": runs, "summary": summarize_scaling(runs)}, indent=2) + "\n",
                          option="--json")
    print(json.dumps(summarize_scaling(runs), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
