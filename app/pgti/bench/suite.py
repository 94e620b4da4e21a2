"""`pgti bench all`: every benchmark, then DIR/results.json, DIR/report.md and PNG charts.

    pgti bench all --out DIR [--quick] [--data-dir DIR] [--pems FILE] [--only epoch,memory,...]

Sections (each in its own processes, run one after the other; the load average is recorded
around each, since other work on a shared machine slows whatever runs beside it):
  epoch    `pgti bench epoch`: end-to-end training, pgti vs PGT-I's pipeline (ratio, same run)
  memory   `pgti bench memory`: node memory per data placement (+ the PeMS row, estimated)
  loader   `pgti bench loader`: pgti (index-batching) vs per-sample (pgt_i's and a kinder one) vs
           materialized vs memcpy (subprocess, --json)
  model    `pgti bench model`: batched sparse vs message passing, time and memory (subprocess)
  scaling  `pgti train` under mpirun for W = 1, 2, 4, allreduce per engine, PeMS projection
The synthetic datasets are generated into --data-dir (default DIR/data) and reused when present.
--quick is the CI smoke configuration (tiny data, few steps: a few minutes); the full one
states its expected duration when it starts.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from pgti.bench import machine, report
from pgti.errors import UserError
from pgti.outputs import add_force_argument, check_output, write_text_output

SECTIONS = ("epoch", "memory", "loader", "model", "scaling")

QUICK = {
    "name": "quick", "expected_minutes": 4,
    "epoch": [("tiny", "dcrnn-pgt", 3, 1), ("tiny", "dcrnn", 1, 0)],  # (dataset, model, steps, warmup)
    "memory": [("tiny", [1])],  # W=1: the cheapest launches (full: W = 1, 2)
    "loader": {"datasets": ["tiny"], "batches": 20, "repeat": 1},
    "model": [("tiny", "dcrnn-pgt", 2, 1)],  # (dataset, model, steps, warmup); dcrnn: full run only
    "scaling": {"dataset": "tiny", "ranks": [1, 2], "steps": 6, "repeats": 1, "allreduce_repeats": 20},
}

FULL = {
    "name": "full", "expected_minutes": 30,
    "epoch": [("metr-la", "dcrnn-pgt", 5, 1), ("pems-bay", "dcrnn-pgt", 5, 1),
              ("metr-la", "dcrnn", 2, 1), ("pems-bay", "dcrnn", 2, 1)],
    "memory": [("metr-la", [1, 2]), ("pems-bay", [1, 2]), ("pems-all-la", [1, 2])],
    "loader": {"datasets": ["metr-la", "pems-bay"], "batches": 200, "repeat": 2},
    "model": [("metr-la", "dcrnn-pgt", 3, 1), ("pems-bay", "dcrnn-pgt", 3, 1), ("metr-la", "dcrnn", 1, 1)],
    "scaling": {"dataset": "metr-la", "ranks": [1, 2, 4], "steps": 30, "repeats": 2, "allreduce_repeats": 100},
}


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="output directory: report.md, results.json, *.png")
    add_force_argument(p, help="measure again into an --out that holds earlier results")
    p.add_argument("--quick", action="store_true", help="CI smoke configuration: tiny data, few steps (minutes)")
    p.add_argument("--data-dir", help="where the synthetic datasets are made and reused (default OUT/data)")
    p.add_argument("--pems", help="a full-PeMS pgti file: also measure pgti's node memory on it (takes minutes)")
    p.add_argument("--render", action="store_true",
                   help="only redraw the charts and rewrite report.md from OUT/results.json (no benchmark runs)")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    p.add_argument("--threads", type=int, help="torch threads per CPU benchmark process (epoch, model, loader; default: the cores "
                        "other work leaves idle right now, at least 1)")
    p.add_argument("--gpu-factor", type=float, default=None,
                   help="projection: dcrnn-pgt step on a GPU vs on this CPU (default: the A100's memory "
                        "bandwidth over the memcpy bandwidth the loader bench measured here; stated in the report)")
    p.add_argument("--link-bandwidth", type=float, default=None, help="projection: GB/s per rank (default 25)")
    p.add_argument("--link-latency", type=float, default=None, help="projection: microseconds (default 5)")


def run(args) -> int:
    config = QUICK if args.quick else FULL
    only = [s.strip() for s in (args.only or ",".join(SECTIONS)).split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        raise UserError(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.pems and not Path(args.pems).is_file():
        raise UserError(f"--pems {args.pems}: no such file (make one with `pgti data synth --preset pems --out FILE`)")
    out = check_output(args.out, directory=True, reads=[args.pems])
    if not args.render and (out / "results.json").exists() and not args.force:
        raise UserError(f"--out {out}: holds the results of an earlier run; add --force to measure again and "
                        "replace them, --render to redraw them, or choose another --out")
    if args.render:
        results = report.read_results(out / "results.json", out)
        report.write(results, out)
        print(f"rewrote {out / 'report.md'} and the charts from {out / 'results.json'}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    data_dir = Path(args.data_dir) if args.data_dir else out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(config, out, data_dir, args)
    print(f"pgti bench all ({config['name']}): sections {', '.join(only)}; expected duration about "
          f"{config['expected_minutes']} minutes on a 2-core machine (more under load); output {out}", flush=True)
    for section in only:
        bench.section(section)
    bench.finish()
    report.write(bench.results, out)
    failed = [s for s, v in bench.results["sections"].items() if v.get("error")]
    print(f"done in {bench.results['meta']['duration_s'] / 60:.1f} min: {out / 'report.md'}, {out / 'results.json'}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


class Bench:
    """Runs the sections of one configuration and collects their results."""

    def __init__(self, config: dict, out: Path, data_dir: Path, args):
        self.config, self.out, self.data_dir, self.args = config, out, data_dir, args
        self.started = time.time()
        self.results = {
            "schema_version": report.SCHEMA_VERSION,
            "meta": {"configuration": config["name"], "command": "pgti bench all " + " ".join(sys.argv[3:])
                     if sys.argv[1:3] == ["bench", "all"] else "pgti bench all", "started_unix": self.started,
                     "expected_minutes": config["expected_minutes"], "config": config},
            "machine": machine.machine_info(), "sections": {}, "charts": {},
        }
        try:
            import torch

            self.cuda = torch.cuda.is_available()
        except ImportError:  # pragma: no cover
            self.cuda = False
        self.results["gpu"] = {"available": self.cuda, "note": None if self.cuda else
                               "no CUDA device on this machine: the GPU variants (GPU-index-batching, "
                               "PGT-I's GPU path) were skipped"}

    # ------------------------------------------------------------------ plumbing

    def dataset(self, name: str) -> Path:
        """The synthetic preset `name` in the data dir, generated unless a valid file is there."""
        from pgti.data.format import open_dataset
        from pgti.data.synth import generate, preset_spec

        path = self.data_dir / f"{name}.h5"
        if path.exists():
            try:
                open_dataset(path)
                return path
            except Exception:  # a broken or foreign file: make it again
                path.unlink()
        began = time.perf_counter()
        generate(preset_spec(name), path, progress=False)
        print(f"  made {path} ({time.perf_counter() - began:.0f} s)", flush=True)
        return path

    def cli(self, log_name: str, *argv, timeout: float = 3600, threads: int | None = None) -> str:
        """Run `python -m pgti.cli ARGV` in a fresh process; its output goes to logs/LOG_NAME.log.
        `threads` sets OMP_NUM_THREADS (torch's intra-op threads) for commands without --threads."""
        # the suite owns OUT/logs: its own files there are replaced (OUT itself was checked up front)
        cmd = [sys.executable, "-m", "pgti.cli", *map(str, argv), *(["--force"] if "--json" in argv else [])]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        write_text_output(self.out / "logs" / f"{log_name}.log", f"$ {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
            raise RuntimeError(f"`pgti {' '.join(map(str, argv))}` failed (exit {done.returncode}):\n{tail}")
        return done.stdout

    def threads(self) -> int:
        """Torch threads for a CPU benchmark process: --threads, else the cores other work leaves
        idle (at least 1): threads on busy cores wait on each other (5-10x slower measured)."""
        from pgti.bench.loader import default_threads

        return self.args.threads or default_threads()

    def section(self, name: str) -> None:
        print(f"[{name}] (load average {os.getloadavg()[0]:.1f})", flush=True)
        entry = {"load_average_before": os.getloadavg()}
        began = time.perf_counter()
        try:
            entry.update(getattr(self, f"_{name}")())
        except Exception as exc:  # a failed section is reported, the others still run
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = traceback.format_exc()
            print(f"[{name}] FAILED: {entry['error']}", file=sys.stderr, flush=True)
        entry["duration_s"] = time.perf_counter() - began
        entry["load_average_after"] = os.getloadavg()
        self.results["sections"][name] = entry
        print(f"[{name}] {entry['duration_s']:.0f} s", flush=True)

    def finish(self) -> None:
        meta = self.results["meta"]
        meta["finished_unix"] = time.time()
        meta["duration_s"] = meta["finished_unix"] - self.started
        meta["load_average_end"] = os.getloadavg()

    # ------------------------------------------------------------------ sections

    def _epoch(self) -> dict:
        runs = []
        devices = ["cpu"] + (["cuda"] if self.cuda else [])
        for dataset, model, steps, warmup in self.config["epoch"]:
            for device in devices:
                path = self.dataset(dataset)
                target = self.out / "logs" / f"epoch-{dataset}-{model}-{device}.json"
                argv = ["bench", "epoch", "--data", path, "--model", model, "--steps", steps, "--warmup", warmup,
                        "--device", device, "--json", target]
                if self.args.threads:
                    argv += ["--threads", self.args.threads]
                self.cli(target.stem, *argv)
                result = json.loads(target.read_text())
                result["command"] = "pgti " + " ".join(map(str, argv[:-2]))
                runs.append(result)
                print(f"  {dataset:<9} {model:<9} {device}: pgti {result['pipelines']['pgti']['samples_per_s']:.1f} "
                      f"vs PGT-I {result['pipelines']['pgt_i']['samples_per_s']:.1f} samples/s = "
                      f"{result['speedup']:.2f}x", flush=True)
        return {"runs": runs, "gpu_skipped": None if self.cuda else "no CUDA device"}

    def _memory(self) -> dict:
        from pgti.bench import memory
        from pgti.bench.memory_report import table
        from pgti.data.format import open_dataset

        out = {"datasets": {}}
        for dataset, ranks in self.config["memory"]:
            path = self.dataset(dataset)
            info = open_dataset(path)
            print(f"  {dataset}: ranks {ranks}", flush=True)
            results = memory.benchmark(str(path), ranks, memory.METHODS, 64)
            out["datasets"][dataset] = {"raw_bytes": info.signal_bytes, "num_nodes": info.num_nodes,
                                        "num_steps": info.num_steps, "results": results,
                                        "table": table(results, info.signal_bytes)}
        ranks = sorted({w for _, rs in self.config["memory"] for w in rs})
        pems = memory.PemsShape()
        rows = [{"method": m, "ranks": w, "estimate_bytes": memory.estimate(m, w, pems), "measured": False,
                 "reason": "estimated (memory.estimate): PeMS does not fit this machine for this method"}
                for w in ranks for m in memory.METHODS]
        if self.args.pems:
            print(f"  pems (measured for pgti's placements): {self.args.pems}", flush=True)
            measured = memory.benchmark(self.args.pems, ranks, ("node-shared", "node-shared-partitioned"), 64)
            keep = {(r["method"], r["ranks"]): r for r in measured}
            rows = [keep.get((r["method"], r["ranks"]), r) for r in rows]
        out["pems"] = {"raw_bytes": pems.signal_bytes, "num_nodes": pems.num_nodes, "num_steps": pems.num_steps,
                       "results": rows, "measured_file": self.args.pems, "table": table(rows, pems.signal_bytes)}
        return out

    def _loader(self) -> dict:
        from pgti.data.format import open_dataset

        cfg = self.config["loader"]
        out = {"datasets": {}}
        devices = ["cpu"] + (["cuda"] if self.cuda else [])
        for dataset in cfg["datasets"]:
            path = self.dataset(dataset)
            for device in devices:
                target = self.out / "logs" / f"loader-{dataset}-{device}.json"
                argv = ["bench", "loader", "--data", path, "--batch-size", 64, "--batches", cfg["batches"],
                        "--repeat", cfg["repeat"], "--device", device, "--json", target]
                if self.args.threads:
                    argv[-2:-2] = ["--threads", self.args.threads]
                self.cli(target.stem, *argv)
                result = json.loads(target.read_text())
                info = open_dataset(path)
                result.update(num_nodes=info.num_nodes, batch_size=64, device=device,
                              command="pgti " + " ".join(map(str, argv[:-2])))
                out["datasets"][dataset if device == "cpu" else f"{dataset}-cuda"] = result
                rates = {r["method"]: r["batches_per_s"] for r in result["results"]}
                print(f"  {dataset} {device}: " + ", ".join(f"{m} {v:.0f}" for m, v in rates.items()) + " batches/s",
                      flush=True)
        return out

    def _model(self) -> dict:
        runs = []
        devices = ["cpu"] + (["cuda"] if self.cuda else [])
        for dataset, model, steps, warmup in self.config["model"]:
            path = self.dataset(dataset)
            for device in devices:
                target = self.out / "logs" / f"model-{dataset}-{model}-{device}.json"
                argv = ["bench", "model", "--model", model, "--data", path, "--batch-size", 64, "--steps", steps,
                        "--warmup", warmup, "--device", device, "--json", target]
                threads = self.threads() if device == "cpu" else None
                self.cli(target.stem, *argv, threads=threads)
                result = json.loads(target.read_text())
                result["command"] = (f"OMP_NUM_THREADS={threads} " if threads else "") + "pgti " + \
                    " ".join(map(str, argv[:-2]))
                runs.append(result)
                print(f"  {dataset:<9} {model:<9} {device}: {result.get('speedup', 0):.2f}x per step, "
                      f"memory {result.get('memory_ratio') or 0:.2f}x", flush=True)
        return {"runs": runs}

    def _scaling(self) -> dict:
        from pgti.bench import projection, scaling
        from pgti.models.registry import build_model

        cfg = self.config["scaling"]
        path = self.dataset(cfg["dataset"])
        work = self.out / "logs" / "scaling-runs"
        runs = scaling.measure_scaling(path, work, cfg["ranks"], cfg["steps"], cfg["repeats"],
                                       log=lambda text: print(text, flush=True))
        summary = scaling.summarize_scaling(runs)
        counts = {}
        import numpy as np

        edges = np.array([[0, 1], [1, 0]])
        for model, cout in (("dcrnn-pgt", 2), ("dcrnn", 1)):
            m = build_model(model, num_nodes=2, input_channels=2, output_channels=cout, input_steps=12,
                            output_steps=12, edge_index=edges)
            counts[model] = sum(p.numel() for p in m.parameters())
        allreduce = scaling.measure_allreduce(sorted(counts.values()), ranks=2, repeats=cfg["allreduce_repeats"])
        allreduce["models"] = counts
        for row in allreduce["rows"]:
            print(f"  allreduce {row['engine']:<8} {row['count']:>8} floats W=2: {row['median_s'] * 1e6:8.0f} us",
                  flush=True)
        out = {"dataset": cfg["dataset"], "runs": runs, "summary": summary, "allreduce": allreduce}
        epoch_runs = self.results["sections"].get("epoch", {}).get("runs") or []
        loader = self.results["sections"].get("loader", {}).get("datasets") or {}
        if not any(r.get("model") == "dcrnn-pgt" for r in epoch_runs):
            print("  projection: measuring dcrnn-pgt's step first (the epoch section did not run)", flush=True)
            target = self.out / "logs" / "epoch-projection.json"
            self.cli(target.stem, "bench", "epoch", "--data", path, "--model", "dcrnn-pgt", "--steps", 3,
                     "--json", target)
            epoch_runs = [json.loads(target.read_text())]
        assumptions = {}
        if self.args.gpu_factor:
            assumptions["gpu_factor"] = self.args.gpu_factor
        if self.args.link_bandwidth:
            assumptions["link_bandwidth_bytes_s"] = self.args.link_bandwidth * 1e9
        if self.args.link_latency:
            assumptions["link_latency_s"] = self.args.link_latency * 1e-6
        inputs = projection.projection_inputs(epoch_runs, {k: v for k, v in loader.items() if not k.endswith("-cuda")},
                                           allreduce)
        projected = projection.project(inputs, assumptions)
        projected["sensitivity"] = projection.sensitivity(inputs, assumptions=assumptions)
        out["projection"] = projected
        return out
