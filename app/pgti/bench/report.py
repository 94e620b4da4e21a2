"""`pgti bench all`: every benchmark, then DIR/report.md, DIR/results.json and PNG charts.

    pgti bench all --out DIR [--quick] [--data-dir DIR] [--pems FILE] [--only epoch,memory,...]

Sections (each in its own processes, run one after the other; the load average is recorded
around each, since other work on a shared machine slows whatever runs beside it):
  epoch    `pgti bench epoch`: end-to-end training, pgti vs PGT-I's pipeline (ratio, same run)
  memory   `pgti bench memory`: node memory per data placement (+ the PeMS row, estimated)
  loader   `pgti bench loader`: index vs per-sample vs materialized vs memcpy (subprocess, --json)
  model    `pgti bench model`: batched sparse vs message passing, time and memory (subprocess)
  scaling  `pgti train` under mpirun for W = 1, 2, 4, allreduce per engine, PeMS projection
The synthetic datasets are generated into --data-dir (default DIR/data) and reused when present.
--quick is the CI smoke configuration (tiny data, few steps: a few minutes); the full one
states its expected duration when it starts.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

from pgti.errors import UserError

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
    out = Path(args.out)
    if args.render:
        if not (out / "results.json").is_file():
            raise UserError(f"--render: {out / 'results.json'} does not exist; run `pgti bench all --out {out}` first")
        results = json.loads((out / "results.json").read_text())
        draw_charts(results, out)
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        (out / "report.md").write_text(render(results))
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
    draw_charts(bench.results, out)
    (out / "results.json").write_text(json.dumps(bench.results, indent=2, default=str) + "\n")
    (out / "report.md").write_text(render(bench.results))
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
            "meta": {"configuration": config["name"], "command": "pgti bench all " + " ".join(sys.argv[3:])
                     if sys.argv[1:3] == ["bench", "all"] else "pgti bench all", "started_unix": self.started,
                     "expected_minutes": config["expected_minutes"], "config": config},
            "machine": machine_info(), "sections": {}, "charts": {},
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
        cmd = [sys.executable, "-m", "pgti.cli", *map(str, argv)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        (self.out / "logs" / f"{log_name}.log").write_text(f"$ {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
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
                print(f"  {dataset:<9} {model:<9} {device}: ours {result['pipelines']['ours']['samples_per_s']:.1f} "
                      f"vs PGT-I {result['pipelines']['pgti']['samples_per_s']:.1f} samples/s = "
                      f"{result['speedup']:.2f}x", flush=True)
        return {"runs": runs, "gpu_skipped": None if self.cuda else "no CUDA device"}

    def _memory(self) -> dict:
        from pgti.bench import memory
        from pgti.data.format import open_dataset

        out = {"datasets": {}}
        for dataset, ranks in self.config["memory"]:
            path = self.dataset(dataset)
            info = open_dataset(path)
            print(f"  {dataset}: ranks {ranks}", flush=True)
            results = memory.benchmark(str(path), ranks, memory.METHODS, 64)
            out["datasets"][dataset] = {"raw_bytes": info.signal_bytes, "num_nodes": info.num_nodes,
                                        "num_steps": info.num_steps, "results": results,
                                        "table": memory.table(results, info.signal_bytes)}
        ranks = sorted({w for _, rs in self.config["memory"] for w in rs})
        pems = _PemsShape()
        rows = [{"method": m, "ranks": w, "estimate_bytes": memory.estimate(m, w, pems), "measured": False,
                 "reason": "estimated (memory.estimate): PeMS does not fit this machine for this method"}
                for w in ranks for m in memory.METHODS]
        if self.args.pems:
            print(f"  pems (measured for pgti's placements): {self.args.pems}", flush=True)
            measured = memory.benchmark(self.args.pems, ranks, ("node-shared", "node-shared-partitioned"), 64)
            keep = {(r["method"], r["ranks"]): r for r in measured}
            rows = [keep.get((r["method"], r["ranks"]), r) for r in rows]
        out["pems"] = {"raw_bytes": pems.signal_bytes, "num_nodes": pems.num_nodes, "num_steps": pems.num_steps,
                       "results": rows, "measured_file": self.args.pems, "table": memory.table(rows, pems.signal_bytes)}
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
        from pgti.bench import scaling
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
        inputs = scaling.projection_inputs(epoch_runs, {k: v for k, v in loader.items() if not k.endswith("-cuda")},
                                           allreduce)
        projection = scaling.project(inputs, assumptions)
        projection["sensitivity"] = scaling.sensitivity(inputs, assumptions=assumptions)
        out["projection"] = projection
        return out


class _PemsShape:
    """The full PeMS dataset's sizes, for `pgti.bench.memory.estimate` (no file needed)."""

    num_nodes, num_steps, num_channels = 11_160, 105_120, 1

    @property
    def signal_bytes(self) -> int:
        return self.num_steps * self.num_nodes * self.num_channels * 4

    def window_bytes(self, input_steps: int = 12, output_steps: int = 12) -> int:
        windows = self.num_steps - input_steps - output_steps + 1
        return windows * (input_steps + output_steps) * self.num_nodes * self.num_channels * 4


def machine_info() -> dict:
    from pgti.envinfo import environment

    info = {"hostname": platform.node(), "cpus": os.cpu_count(),
            "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu_model": _cpu_model(), "memory_bytes": _mem_total(), "load_average_start": os.getloadavg()}
    try:
        info["versions"] = environment()
    except Exception as exc:  # pragma: no cover - reporting must not fail on an odd install
        info["versions"] = {"error": str(exc)}
    return info


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> int | None:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- charts


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def draw_charts(results: dict, out: Path) -> dict:
    """Every chart of the sections that ran, into `out`; records their names in results["charts"]."""
    from pgti.bench import epoch, memory, scaling

    sections, charts = results["sections"], {}

    def ok(name):
        return name in sections and not sections[name].get("error")

    def draw(key, make):
        try:
            charts[key] = Path(make()).name
        except Exception as exc:  # a chart must not lose the results
            print(f"chart {key} failed: {exc}", file=sys.stderr)

    if ok("epoch") and sections["epoch"]["runs"]:
        draw("epoch", lambda: epoch.chart(sections["epoch"]["runs"], out / "epoch.png"))
    if ok("memory"):
        for name, d in sections["memory"]["datasets"].items():
            title = f"node memory, {name} ({d['num_nodes']} sensors x {d['num_steps']:,} steps)"
            draw(f"memory-{name}", lambda d=d, name=name, title=title: memory.chart(
                d["results"], out / f"memory-{name}.png", title))
    if ok("loader") and sections["loader"]["datasets"]:
        draw("loader", lambda: chart_loader(sections["loader"]["datasets"], out / "loader.png"))
    if ok("model") and sections["model"]["runs"]:
        draw("model", lambda: chart_model(sections["model"]["runs"], out / "model.png"))
    if ok("scaling"):
        s = sections["scaling"]
        draw("scaling", lambda: scaling.chart_measured(
            s["summary"], out / "scaling.png", f"pgti train, dcrnn-pgt on {s['dataset']}, "
            f"{results['machine']['cpus_available']} cores (W > cores: oversubscribed)"))
        if s.get("projection"):
            draw("projection", lambda: scaling.chart_projection(
                s["projection"], out / "projection.png", "PeMS (11,160 sensors x 105,120 steps), dcrnn-pgt, batch 64 "
                "per GPU: projected (model, not measured)"))
    results["charts"] = charts
    return charts


def _log_floor(ax, values) -> None:
    """A log axis from a third of a decade under the smallest positive value (bars compare)."""
    positive = [v for v in values if v and v > 0]
    if positive:
        ax.set_ylim(min(positive) / 3, max(positive) * 3)


def chart_loader(datasets: dict, path: Path) -> Path:
    """Batches/s per method and dataset (log), with GB/s against memcpy."""
    import numpy as np

    plt = _pyplot()
    names = list(datasets)
    methods = [r["method"] for r in datasets[names[0]]["results"]] if names else []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / max(1, len(methods))
    for i, method in enumerate(methods):
        rates, gbs = [], []
        for name in names:
            row = next((r for r in datasets[name]["results"] if r["method"] == method), None)
            rates.append(row["batches_per_s"] if row else 0)
            gbs.append(row["gb_per_s"] if row else 0)
        xs = np.arange(len(names)) + i * width
        axes[0].bar(xs, rates, width, label=method)
        axes[1].bar(xs, gbs, width, label=method)
    for ax, label, key in ((axes[0], "batches/s (batch 64)", "batches_per_s"),
                           (axes[1], "useful GB/s (float32 x and y)", "gb_per_s")):
        ax.set_xticks(np.arange(len(names)) + width * (len(methods) - 1) / 2, names)
        ax.set_yscale("log")
        _log_floor(ax, [r[key] for name in names for r in datasets[name]["results"]])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    fig.suptitle("batch loading (each method in its own process; memcpy = physical reference)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def chart_model(runs: list[dict], path: Path) -> Path:
    """Seconds per training step and peak step memory, ours vs the message-passing reference."""
    import numpy as np

    plt = _pyplot()
    labels = [f"{r['model']}\n{r['dataset_name']}\n{r['device']}" for r in runs]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    xs = np.arange(len(runs))
    for offset, key, name in ((-0.2, "ours", "pgti (batched sparse)"), (0.2, "reference", "PGT-I message passing")):
        secs = [(r.get(key) or {}).get("median_s") or 0 for r in runs]
        mem = [((r.get(key) or {}).get("peak_bytes") or 0) / 2**20 for r in runs]
        axes[0].bar(xs + offset, secs, 0.4, label=name)
        axes[1].bar(xs + offset, mem, 0.4, label=name)
    for ax, label, values in ((axes[0], "s per training step (median)", [
            (r.get(k) or {}).get("median_s") for r in runs for k in ("ours", "reference")]),
            (axes[1], "peak step memory (MiB)", [
                ((r.get(k) or {}).get("peak_bytes") or 0) / 2**20 for r in runs for k in ("ours", "reference")])):
        ax.set_xticks(xs, labels, fontsize=7)
        ax.set_yscale("log")
        _log_floor(ax, values)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.suptitle("one training step (forward + backward), batch 64, same weights and batch", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- report.md


def _gib(n) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.1f} MiB" if abs(n) < 2**30 else f"{n / 2**30:.2f} GiB"


def _x(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}x"


def _dur(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.0f} s"


def _load(entry: dict) -> str:
    before, after = entry.get("load_average_before"), entry.get("load_average_after")
    if not before or not after:
        return "-"
    return f"{before[0]:.1f} -> {after[0]:.1f}"


def render(results: dict) -> str:
    """The whole report.md from results.json's content."""
    meta, machine, sections = results["meta"], results["machine"], results["sections"]
    versions = machine.get("versions", {})
    lines = [
        "# pgti benchmark report", "",
        f"Configuration **{meta['configuration']}**, `{meta['command']}`, started "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(meta['started_unix']))}, took "
        f"{_dur(meta.get('duration_s'))}.", "",
        f"Machine: {machine['cpu_model']}, {machine['cpus_available']} cores available, "
        f"{_gib(machine.get('memory_bytes'))} memory, host `{machine['hostname']}`. "
        f"1-minute load average {machine['load_average_start'][0]:.1f} at the start and "
        f"{meta.get('load_average_end', [0])[0]:.1f} at the end (the benchmark's own processes count too; other "
        "work on the machine makes absolute figures noisy); every headline is a ratio of two methods measured "
        "in the same run, interleaved where the benchmark allows.", "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k in (
            "python", "torch", "numpy", "h5py", "mpi", "mpi4py", "horovod", "pgti")) + ".", "",
        "GPU: " + ("available: " + ", ".join(versions.get("gpus") or []) if results["gpu"]["available"]
                   else "**no GPU was available for this run**; " + results["gpu"]["note"] + ".") + "",
        "",
    ]
    lines += _headlines(sections)
    renderers = {"epoch": _epoch_md, "memory": _memory_md, "loader": _loader_md, "model": _model_md,
                 "scaling": _scaling_md}
    for number, (name, entry) in enumerate(sections.items(), start=1):
        lines += ["", f"## {number}. {name}", "",
                  f"Section time {_dur(entry.get('duration_s'))}, load average {_load(entry)}.", ""]
        if entry.get("error"):
            lines += [f"**Failed**: `{entry['error']}` (traceback in results.json).", ""]
            continue
        lines += renderers[name](entry, results)
    lines += ["", "## Raw data", "",
              "`results.json` holds every sample (step times, loader rounds, scaling runs, allreduce samples), "
              "the machine and versions, and the configuration; `logs/` the output of every process.", ""]
    return "\n".join(lines)


def _headlines(sections: dict) -> list[str]:
    rows = []
    for r in sections.get("epoch", {}).get("runs") or []:
        p = r["pipelines"]
        rows.append((f"training throughput, {r['model']} on {r['dataset_name']} ({r['device']})",
                     _x(r["speedup"]), f"pgti {p['ours']['samples_per_s']:.1f} vs PGT-I pipeline "
                                       f"{p['pgti']['samples_per_s']:.1f} samples/s"))
    memory = sections.get("memory", {}).get("datasets") or {}
    if memory:
        name = list(memory)[-1]
        res = memory[name]["results"]
        w = max(r["ranks"] for r in res)

        def node(method):
            row = next((r for r in res if r["method"] == method and r["ranks"] == w), None)
            if row is None:
                return None, ""
            if row.get("measured"):
                return row["node_pss_bytes"], ""
            return row["estimate_bytes"], " (est.)"

        ours, _ = node("node-shared")
        for method, label in (("per-rank-copy", "PGT-I per-rank copy"), ("materialized", "materialized (DDP)")):
            theirs, note = node(method)
            if ours and theirs:
                rows.append((f"node memory, {name}, W={w}: {label} / pgti node-shared", _x(theirs / ours),
                             f"{_gib(theirs)}{note} vs {_gib(ours)}"))
    loader = sections.get("loader", {}).get("datasets") or {}
    for name, result in loader.items():
        by = {r["method"]: r for r in result["results"]}
        if "index" in by and "per_sample_pgt" in by:
            rows.append((f"batch loading, {name}: index vs PGT-I per-sample", 
                         _x(by["index"]["batches_per_s"] / by["per_sample_pgt"]["batches_per_s"], 1),
                         f"{by['index']['batches_per_s']:.0f} vs {by['per_sample_pgt']['batches_per_s']:.0f} batches/s"))
        if "index" in by and "memcpy" in by:
            rows.append((f"batch loading, {name}: memcpy / index GB/s (physical bound)",
                         _x(by["memcpy"]["gb_per_s"] / by["index"]["gb_per_s"]),
                         f"{by['index']['gb_per_s']:.2f} vs memcpy {by['memcpy']['gb_per_s']:.2f} GB/s"))
    for r in sections.get("model", {}).get("runs") or []:
        if r.get("speedup"):
            rows.append((f"model step, {r['model']} on {r['dataset_name']}: reference / ours",
                         _x(r["speedup"]), f"time; peak memory {_x(r.get('memory_ratio'))} less"))
    scaling = sections.get("scaling") or {}
    for row in scaling.get("summary") or []:
        if row["ranks"] == 2:
            rows.append((f"measured {row['mode']} scaling efficiency, W=2 on 2 cores", f"{row['efficiency']:.2f}",
                         f"{row['samples_per_s']:.0f} samples/s vs W=1"))
    projection = scaling.get("projection")
    if projection:
        w = max(r["gpus"] for r in projection["rows"])
        ours = next(r for r in projection["rows"] if r["method"] == "pgti" and r["gpus"] == w)
        theirs = next(r for r in projection["rows"] if r["method"] == "pgt-i" and r["gpus"] == w)
        rows.append((f"projected, PeMS at {w} GPUs: pgti vs PGT-I (model)", _x(theirs["epoch_s"] / ours["epoch_s"]),
                     f"epoch {_dur(ours['epoch_s'])} vs {_dur(theirs['epoch_s'])}; efficiency "
                     f"{ours['efficiency']:.2f} vs {theirs['efficiency']:.2f}"))
        rows.append((f"projected, PeMS at {w} GPUs: pgti vs standard DDP (model)", _x(ours["speedup_over_ddp"]),
                     f"PGT-I reported {projection['headline']['speedup_over_ddp']}x over DDP (the DDP model is "
                     "calibrated on it)"))
    if not rows:
        return []
    out = ["## Headlines", "", "| figure | ratio | from (same run) |", "|---|---:|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return out


def _epoch_md(entry: dict, results: dict) -> list[str]:
    out = ["End-to-end training steps (batch loading + forward + masked-MAE loss + backward + Adam step) of two "
           "complete pipelines, same dataset, same initial weights, same batches in the same order, steps "
           "interleaved (`pgti bench epoch`): **pgti** = `IndexBatcher` gather from the one raw array + our "
           "batched sparse-diffusion model; **PGT-I** = PGT-I's per-sample `IndexDataset` method (float64, x "
           "and y with every feature, default collate, cast after) + message passing over edges replicated B "
           "times (`PGTBatchedDCRNN` / `MessagePassingDCRNN`, loading our state_dict). Epoch time = median "
           "measured time per step x steps per epoch (train windows // 64): extrapolated, not a timed epoch.", "",
           "| dataset | model | device | params | steps/epoch | pgti s/step | PGT-I s/step | pgti samples/s | "
           "PGT-I samples/s | pgti epoch | PGT-I epoch | ratio | step-1 loss diff | threads | load |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in entry["runs"]:
        o, t = r["pipelines"]["ours"], r["pipelines"]["pgti"]
        out.append(f"| {r['dataset_name']} | {r['model']} | {r['device']} | {r['parameters']:,} | "
                   f"{r['steps_per_epoch']:,} | {o['median_step_s']:.3f} | {t['median_step_s']:.3f} | "
                   f"{o['samples_per_s']:.1f} | {t['samples_per_s']:.1f} | {_dur(o['epoch_time_s'])} | "
                   f"{_dur(t['epoch_time_s'])} | **{r['speedup']:.2f}x** | {r['first_step_loss_difference']:.1e} | "
                   f"{r.get('threads') or '-'} | {r['load_average_before']:.1f} -> {r['load_average_after']:.1f} |")
    out += ["", f"Timed steps per pipeline after warm-up: "
            + ", ".join(f"{r['dataset_name']}/{r['model']}: {r['steps']} (+{r['warmup']})" for r in entry["runs"])
            + ". Command: `" + (entry["runs"][0]["command"] if entry["runs"] else "") + "`.", "",
            f"![end-to-end training throughput]({results['charts'].get('epoch', 'epoch.png')})", ""]
    if entry.get("gpu_skipped"):
        out.append("GPU-index-batching variant (raw array on the GPU, batches gathered there): **skipped, no GPU "
                   "was available for this run**.")
    return out


def _memory_md(entry: dict, results: dict) -> list[str]:
    from pgti.bench import memory

    out = ["Node memory (summed PSS of all ranks, shared pages counted once) of real `mpirun` launches that hold "
           "the data each method's way and gather 8 batches (`pgti bench memory`). " +
           " ".join(f"`{k}`: {v}." for k, v in memory.LABELS.items()), ""]
    for name, d in entry["datasets"].items():
        out += [f"**{name}** ({d['num_nodes']:,} sensors x {d['num_steps']:,} steps, raw array "
                f"{_gib(d['raw_bytes'])})", "", d["table"], "",
                f"![node memory {name}]({results['charts'].get(f'memory-{name}', '')})", ""]
    pems = entry["pems"]
    how = (f"pgti's placements measured on `{pems['measured_file']}`, the others estimated"
           if pems.get("measured_file") else "estimated with `pgti.bench.memory.estimate` for every method (no "
           "--pems file given; the peers cannot run it on this machine)")
    out += [f"**pems** ({pems['num_nodes']:,} sensors x {pems['num_steps']:,} steps, raw array "
            f"{_gib(pems['raw_bytes'])}): {how}.", "",
            "| method | ranks | node memory | x raw array | vs node-shared | how |", "|---|---:|---:|---:|---:|---|"]
    rows = pems["results"]

    def size(row):
        return row["node_pss_bytes"] if row.get("measured") else row["estimate_bytes"]

    for row in rows:
        ours = next((r for r in rows if r["method"] == "node-shared" and r["ranks"] == row["ranks"]), None)
        how = "measured (summed PSS)" if row.get("measured") else "estimated"
        out.append(f"| {memory.LABELS[row['method']]} | {row['ranks']} | {_gib(size(row))} | "
                   f"{size(row) / pems['raw_bytes']:.2f} | {_x(size(row) / size(ours)) if ours else '-'} | {how} |")
    out += ["", "(Estimates: the data each method holds plus a 0.3 GiB runtime per rank; the materialized "
            "windows of one rank alone exceed this machine's memory.)", ""]
    return out


def _loader_md(entry: dict, results: dict) -> list[str]:
    out = ["Batch loading alone, batch 64, each method in a fresh process (`pgti bench loader --json`); "
           "memcpy copies the same useful bytes from random places of >= 1 GiB: the physical bound. "
           "With `--repeat R` every method ran R times, interleaved, and its fastest run is kept.", ""]
    for name, d in entry["datasets"].items():
        by = {r["method"]: r for r in d["results"]}
        index = by.get("index")
        m = d.get("machine", {})
        out += [f"**{name}** ({d['num_nodes']:,} sensors, {d.get('device', 'cpu')}, {m.get('threads')} thread(s), "
                f"load {m.get('load_average_before', 0):.1f} -> {m.get('load_average_after', 0):.1f}); "
                f"`{d['command']}`", "",
                "| method | setup s | peak RSS | batches/s (runs) | vs index | GB/s | memcpy / method |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for method, r in by.items():
            runs = ", ".join(f"{v:.0f}" for v in r.get("runs_batches_per_s", []))
            vs = _x(r["batches_per_s"] / index["batches_per_s"]) if index else "-"
            bound = _x(by["memcpy"]["gb_per_s"] / r["gb_per_s"]) if "memcpy" in by else "-"
            out.append(f"| {method} | {r['setup_s']:.2f} | {_gib(r['peak_rss_bytes'])} | {r['batches_per_s']:.0f} "
                       f"({runs}) | {vs} | {r['gb_per_s']:.2f} | {bound} |")
        out.append("")
    out += [f"![batch loading]({results['charts'].get('loader', 'loader.png')})", ""]
    return out


def _model_md(entry: dict, results: dict) -> list[str]:
    out = ["One training step (forward + backward) on the same batch with the same weights (`pgti bench model "
           "--json`): our batched sparse diffusion vs PGT-I-style message passing over replicated edges. Outputs "
           "are checked to agree (max |difference| <= 1e-4) before timing. Peak memory on CPU: growth of the peak "
           "resident set in a child process (0 = below that method's resolution: the step fit in memory the process "
           "already held). CPU benchmark processes run with OMP_NUM_THREADS = the cores other work left "
           "idle (at least 1).", "",
           "| model | dataset | device | params | ours s/step | reference s/step | speedup | ours peak | "
           "reference peak | memory ratio | max output diff |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in entry["runs"]:
        o, ref = r.get("ours") or {}, r.get("reference") or {}
        out.append(f"| {r['model']} | {r['dataset_name']} | {r['device']} | {o.get('parameters', 0):,} | "
                   f"{o.get('median_s', 0):.3f} | {ref.get('median_s') or 0:.3f} | **{_x(r.get('speedup'))}** | "
                   f"{_gib(o.get('peak_bytes'))} | {_gib(ref.get('peak_bytes'))} | {_x(r.get('memory_ratio'))} | "
                   f"{r.get('max_abs_output_difference', 0):.1e} |")
    out += ["", "Timed steps: " + ", ".join(f"{r['model']}/{r['dataset_name']}: {r['steps']} (+{r['warmup']} "
                                             "warm-up)" for r in entry["runs"]) + ".", "",
            f"![model step]({results['charts'].get('model', 'model.png')})", ""]
    return out


def _scaling_md(entry: dict, results: dict) -> list[str]:
    from pgti.bench import scaling

    cores = results["machine"]["cpus_available"]
    runs = entry["runs"]
    out = [f"**Measured** on this machine: `mpirun -np W python -m pgti.cli train` with dcrnn-pgt on the "
           f"synthetic `{entry['dataset']}` dataset, Horovod engine, `train.max_steps={runs[0]['steps'] if runs else '?'}`, "
           f"samples/s read from the run's metrics.jsonl (all steps of the run, the first included). Strong "
           f"scaling: global batch 64 (64/W per rank); weak: 64 per rank. **The machine has {cores} cores: "
           f"W > {cores} ranks are oversubscribed** and show contention, not scaling (as does any other work on "
           "the machine). (`pgti train` builds dcrnn-pgt with hidden = C_out = the target channels, 1: 57 "
           "parameters; `model.params.hidden_channels=2` gives the PGT-I cell of the other sections, 150.)", "",
           "| mode | W | per-rank batch | samples/s (median; runs) | speedup | efficiency |",
           "|---|---:|---:|---:|---:|---:|"]
    for row in entry["summary"]:
        batch = 64 // row["ranks"] if row["mode"] == "strong" else 64
        runs_text = ", ".join(f"{v:.0f}" for v in row["samples_per_s_runs"])
        out.append(f"| {row['mode']} | {row['ranks']} | {batch} | {row['samples_per_s']:.0f} ({runs_text}) | "
                   f"{row['speedup']:.2f} | {row['efficiency']:.2f} |")
    if runs:
        out += ["", f"Example command: `{runs[-1]['command']}`"]
    out += ["", f"![measured scaling]({results['charts'].get('scaling', 'scaling.png')})", ""]
    ar = entry["allreduce"]
    names = {v: k for k, v in ar.get("models", {}).items()}
    out += [f"**Allreduce** of a float32 tensor of each model's parameter count, W={ar['ranks']} on this machine "
            f"(shared memory), {ar['repeats']} samples of {ar['inner']} back-to-back allreduces, interleaved across "
            "engines, median (`python -m pgti.bench.allreduce_worker`):", "",
            "| engine | tensor | bytes | median | min |", "|---|---|---:|---:|---:|"]
    for row in ar["rows"]:
        out.append(f"| {row['engine']} | {names.get(row['count'], row['count'])} ({row['count']:,} floats) | "
                   f"{row['bytes']:,} | {row['median_s'] * 1e6:.0f} us | {row['min_s'] * 1e6:.0f} us |")
    p = entry.get("projection")
    if not p:
        return out
    a, inputs, sizes, mem = p["assumptions"], p["inputs"], p["sizes"], p["memory"]
    out += ["", "**Projection** (a model, not a measurement) of dcrnn-pgt on the full PeMS dataset "
            f"({sizes['num_nodes']:,} sensors x {sizes['num_steps']:,} steps, {sizes['train_windows']:,} training "
            f"windows), batch {a['batch_size']} per GPU, on 4-128 GPUs:", "",
            "- epoch(W) = floor(train windows / (64 W)) x (compute + data + allreduce(W)), no overlap assumed;",
            f"- compute: measured here ({inputs['compute_source']}): pgti "
            f"{inputs['compute_s_per_window_sensor']['pgti'] * 1e6:.3f} us and PGT-I "
            f"{inputs['compute_s_per_window_sensor']['pgt-i'] * 1e6:.3f} us per window per sensor, times 64 x "
            f"{sizes['num_nodes']:,} sensors, divided by a **stated CPU -> GPU factor of {a['gpu_factor']:.0f}** "
            f"({a.get('gpu_factor_source')}: {a['gpu_bandwidth_bytes_s'] / 1e12:.2f} TB/s over "
            f"{inputs.get('memcpy_bytes_s', 0) / 1e9:.1f} GB/s; the sparse diffusion is memory-bound; no GPU was "
            f"available to measure it): {p['compute_s']['pgti'] * 1e3:.2f} ms and {p['compute_s']['pgt-i'] * 1e3:.2f} "
            "ms per step (the CPU ratio between the two implementations is assumed to carry over to GPUs);",
            f"- data: pgti gathers on the GPU (GPU-index-batching): {sizes['batch_bytes'] / 1e6:.0f} MB per step at "
            f"{a['gpu_bandwidth_bytes_s'] / 1e12:.2f} TB/s x {inputs['index_memcpy_efficiency']:.2f} (index GB/s / "
            f"memcpy GB/s, measured by the loader bench) = {p['data_s']['pgti'] * 1e3:.3f} ms; PGT-I's GPU path: 64 "
            f"per-sample calls at {inputs['pgt_loader_s_per_window'] * 1e6:.0f} us (its per-window loader cost "
            f"measured here) + {sizes['pgt_batch_bytes'] / 1e6:.0f} MB collated = {p['data_s']['pgt-i'] * 1e3:.2f} ms;",
            f"- allreduce: ring, 2(W-1)/W x {4 * a['parameters']} bytes / {a['link_bandwidth_bytes_s'] / 1e9:g} GB/s + "
            f"2(W-1) x {a['link_latency_s'] * 1e6:g} us (Slingshot/NVLink-class assumption), plus each engine's "
            f"fixed cost per step measured here ({inputs.get('engine_overhead_source', 'not measured')}): Horovod "
            f"{p['engine_cost_s']['pgti'] * 1e3:.2f} ms for pgti (its cycle time), gloo "
            f"{p['engine_cost_s']['pgt-i'] * 1e3:.2f} ms for PGT-I and DDP;",
            f"- **standard DDP cannot hold PeMS**: materialized windows are 24x the raw array per rank "
            f"({_gib(sizes['materialized_speed_only_bytes_per_rank'])} for the speed channel alone, "
            f"{_gib(mem['ddp_rank_bytes'])} with x's time of day) against {_gib(a['gpu_memory_bytes'])} of GPU "
            f"memory and {_gib(mem['ddp_node_bytes'])} for {a['gpus_per_node']} ranks on a "
            f"{_gib(a['node_memory_bytes'])} node (raw array {_gib(mem['raw_bytes'])}). As in PGT-I's DDP baseline, "
            "its windows come from a distributed in-memory store: each step fetches the remote share (W-1)/W of a "
            f"batch ({sizes['batch_bytes'] / 1e6:.0f} MB) at an effective bandwidth that we **calibrate** so that the "
            f"model reproduces PGT-I's reported {p['headline']['speedup_over_ddp']}x at "
            f"{p['headline']['gpus']} GPUs: {p['ddp_effective_bandwidth_bytes_s'] / 1e9:.3f} GB/s per rank "
            f"(fed at the full {a['link_bandwidth_bytes_s'] / 1e9:g} GB/s link instead, DDP would be only "
            f"{p['ddp_at_link_bandwidth_vs_pgt_i']:.2f}x slower than PGT-I per step: the reported gap is the data "
            "store's movement and overheads, which the calibration lumps together).", "",
            "| GPUs | steps/epoch | " + " | ".join(f"{scaling.METHOD_LABELS[m]} epoch (efficiency)"
                                                 for m in scaling.METHODS) + " | pgti vs PGT-I | pgti vs DDP |",
            "|---:|---:|" + "---:|" * len(scaling.METHODS) + "---:|---:|"]
    for w in a["gpus"]:
        row = {r["method"]: r for r in p["rows"] if r["gpus"] == w}
        cells = " | ".join(f"{_dur(row[m]['epoch_s'])} ({row[m]['efficiency']:.2f})" for m in scaling.METHODS)
        out.append(f"| {w} | {row['pgti']['steps_per_epoch']} | {cells} | "
                   f"{_x(row['pgt-i']['epoch_s'] / row['pgti']['epoch_s'])} | {_x(row['pgti']['speedup_over_ddp'])} |")
    out += ["", "Sensitivity to the CPU -> GPU factor (at the largest GPU count):", "",
            "| factor | pgti epoch | pgti efficiency | pgti vs PGT-I | pgti vs DDP |", "|---:|---:|---:|---:|---:|"]
    for s in p.get("sensitivity", []):
        out.append(f"| {s['gpu_factor']:.0f} | {_dur(s['pgti_epoch_s'])} | {s['pgti_efficiency']:.2f} | "
                   f"{_x(s['speedup_over_pgt_i'])} | {_x(s['speedup_over_ddp'])} |")
    out += ["", f"![projection]({results['charts'].get('projection', 'projection.png')})", ""]
    return out
