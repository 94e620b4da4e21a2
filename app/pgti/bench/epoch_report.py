"""The `epoch` section of `pgti bench all`: report.md lines, headlines and chart (`pgti.bench.epoch.chart`)."""
from __future__ import annotations

from pgti.bench import epoch
from pgti.bench.format import dur, x


def headlines(results: dict) -> list[tuple[str, str, str]]:
    """(figure, ratio, from) rows of the report's headline table."""
    sections, rows = results["sections"], []
    for r in sections.get("epoch", {}).get("runs") or []:
        p = r["pipelines"]
        rows.append((f"training throughput, {r['model']} on {r['dataset_name']} ({r['device']})",
                     x(r["speedup"]), f"pgti {p['pgti']['samples_per_s']:.1f} vs PGT-I pipeline "
                                       f"{p['pgt_i']['samples_per_s']:.1f} samples/s"))
    return rows


def charts(results: dict, out) -> dict:
    """Chart name -> a function drawing it into the directory `out` (returns its path)."""
    runs = results["sections"]["epoch"]["runs"]
    return {"epoch": lambda: epoch.chart(runs, out / "epoch.png")} if runs else {}


def markdown(results: dict) -> list[str]:
    """The `epoch` section of report.md."""
    entry = results["sections"]["epoch"]
    out = ["End-to-end training steps (batch loading + forward + masked-MAE loss + backward + Adam step) of two "
           "complete pipelines, same dataset, same initial weights, same batches in the same order, steps "
           "interleaved (`pgti bench epoch`): **pgti** = `IndexBatcher` gather from the one raw array + pgti's "
           "batched sparse-diffusion model, trained by `pgti train`'s own `train_step` (optimizer, scheduler "
           "and loss from the model's recipe); **PGT-I** = PGT-I's per-sample `IndexDataset` method (float64, x "
           "and y with every feature, default collate, cast after) + message passing over edges replicated B "
           "times (`PGTBatchedDCRNN` / `MessagePassingDCRNN`, loading pgti's state_dict). Epoch time = median "
           "measured time per step x steps per epoch (train windows // 64): extrapolated, not a timed epoch.", "",
           "| dataset | model | device | params | steps/epoch | pgti s/step | PGT-I s/step | pgti samples/s | "
           "PGT-I samples/s | pgti epoch | PGT-I epoch | ratio | step-1 loss diff | threads | load |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in entry["runs"]:
        o, t = r["pipelines"]["pgti"], r["pipelines"]["pgt_i"]
        out.append(f"| {r['dataset_name']} | {r['model']} | {r['device']} | {r['parameters']:,} | "
                   f"{r['steps_per_epoch']:,} | {o['median_step_s']:.3f} | {t['median_step_s']:.3f} | "
                   f"{o['samples_per_s']:.1f} | {t['samples_per_s']:.1f} | {dur(o['epoch_time_s'])} | "
                   f"{dur(t['epoch_time_s'])} | **{r['speedup']:.2f}x** | {r['first_step_loss_difference']:.1e} | "
                   f"{r.get('threads') or '-'} | {r['load_average_before']:.1f} -> {r['load_average_after']:.1f} |")
    out += ["", "Timed steps per pipeline after warm-up: "
            + ", ".join(f"{r['dataset_name']}/{r['model']}: {r['steps']} (+{r['warmup']})" for r in entry["runs"])
            + ". Command: `" + (entry["runs"][0]["command"] if entry["runs"] else "") + "`.", "",
            f"![end-to-end training throughput]({results['charts'].get('epoch', 'epoch.png')})", ""]
    if entry.get("gpu_skipped"):
        out.append("GPU-index-batching variant (raw array on the GPU, batches gathered there): **skipped, no GPU "
                   "was available for this run**.")
    return out

