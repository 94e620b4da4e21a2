"""`pgti status RUN_DIR [--json]`: where a run stands, from its files alone.

    state        running (host/PID from the lock), stopped (checkpointed for a resubmit),
                 finished, early-stopped, diverged, failed, killed (no final status and no
                 live holder: resubmit with --resume auto), not started
    progress     epoch and global step of the total, last train loss, last and best val MAE,
                 samples/s, step time, ETA
    files        newest checkpoint and its age, disk used

It reads R/.lock, R/status.json, R/metrics.jsonl, R/config.toml and the checkpoint names;
it writes nothing and imports neither torch nor MPI, so it answers in well under a second,
on a login node, while the run is writing, and on another user's run directory.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pgti.errors import UserError
from pgti.train.checkpoint import STEP_NAME
from pgti.train.lock import DEFAULT_HEARTBEAT_S, LOCK_NAME, describe, holder_alive, read_record
from pgti.train.monitor import STATUS_NAME

NEXT = {"stopped": "resubmit the same command (--resume auto continues from the checkpoint)",
        "killed": "resubmit with --resume auto: it continues from the newest checkpoint",
        "diverged": "lower train.lr or raise train.grad_clip, then --resume auto from the last good checkpoint",
        "failed": "see train.log for the error; fix it and resubmit with --resume auto"}


def add_arguments(p) -> None:
    p.add_argument("run_dir", help="a run directory of pgti train (--run-dir)")
    p.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")


def run(args) -> int:
    report = collect(Path(args.run_dir))
    print(json.dumps(report, indent=1) if args.json else render(report))
    return 0


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _metrics(path: Path) -> list[dict]:
    rows = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass  # a line being appended right now
    return [r for r in rows if isinstance(r, dict)]


def _disk_used(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass  # removed while we walked (checkpoint pruning)
    return total


def _newest_checkpoint(directory: Path) -> tuple[str | None, float | None]:
    try:
        names = sorted((n for n in os.listdir(directory) if STEP_NAME.match(n)), reverse=True)
    except OSError:
        return None, None
    for name in names:
        try:
            return name, time.time() - os.stat(directory / name).st_mtime
        except OSError:
            continue
    return None, None


def collect(run_dir: Path) -> dict:
    """Everything `pgti status` says about `run_dir`, as plain data."""
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory (not started yet?); give the --run-dir of a pgti train")
    record, age = read_record(run_dir / LOCK_NAME)
    status = _read_json(run_dir / STATUS_NAME) or {}
    rows = _metrics(run_dir / "metrics.jsonl")
    if not (record or status or rows or (run_dir / "config.toml").exists()):
        raise UserError(f"{run_dir}: not a run directory (no config.toml, status.json or lock); give the --run-dir "
                        "of a pgti train")
    locked = age is not None  # R/.lock exists (its record may be unreadable here: another user's 0600 file)
    if record is not None:
        alive = holder_alive(record, age)
    else:
        alive = (None if age < 5 * DEFAULT_HEARTBEAT_S else False) if locked else False
    if locked and alive is not False:
        state = "running"
    elif status.get("state") == "running" or (locked and not status):
        state = "killed"  # no final status written and nobody holds the lock
    else:
        state = status.get("state") or ("not started" if not rows else "unknown")
    report = {"run_dir": str(run_dir), "state": state, "exit_status": status.get("exit_status"),
              "reason": status.get("reason") or "", "next": NEXT.get(state, "")}
    if state == "running":
        record = record or {"host": "?", "pid": "?", "started_utc": "? (the lock file is not readable here)"}
        report["holder"] = {"host": record.get("host"), "pid": record.get("pid"), "job_id": record.get("job_id"),
                            "since": record.get("started_utc"), "heartbeat_age_s": age,
                            "checked": "pid" if alive else "heartbeat"}
    elif record and state == "killed":
        report["reason"] = f"the lock was left by {describe(record, age)}, which is gone"
    for key in ("epoch", "epochs", "global_step", "total_steps", "steps_per_epoch", "world_size", "train_loss",
                "samples_per_s", "step_time_s", "job_id"):
        report[key] = status.get(key)
    report["updated_age_s"] = time.time() - status["updated"] if status.get("updated") else None
    if state == "running" and status.get("step_time_s") and status.get("total_steps") is not None:
        report["eta_s"] = max(0, status["total_steps"] - status.get("global_step", 0)) * status["step_time_s"]
    validated = [r for r in rows if r.get("val")]
    report["val_mae"] = validated[-1]["val"]["overall"]["mae"] if validated else None
    best = min(validated, key=lambda r: r["val"]["overall"]["mae"], default=None)
    report["best_epoch"] = best["epoch"] + 1 if best else None
    report["best_val_mae"] = best["val"]["overall"]["mae"] if best else None
    report["checkpoint"], report["checkpoint_age_s"] = _newest_checkpoint(run_dir / "checkpoints")
    report["best_checkpoint"] = (run_dir / "checkpoints" / "best.pt").is_file()
    report["disk_bytes"] = _disk_used(run_dir)
    return report


def _ago(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render(r: dict) -> str:
    state = r["state"]
    if state == "running":
        h = r["holder"]
        job = f", job {h['job_id']}" if h.get("job_id") else ""
        state += f" on {h['host']} (PID {h['pid']}{job}, since {h['since']}; heartbeat {_ago(h['heartbeat_age_s'])} ago)"
    elif r.get("exit_status") is not None:
        state += f" (exit {r['exit_status']}{': ' + r['reason'] if r['reason'] else ''})"
    elif r.get("reason"):
        state += f" ({r['reason']})"
    lines = [("run", r["run_dir"]), ("state", state)]
    if r.get("next"):
        lines.append(("next", r["next"]))
    if r.get("total_steps"):
        pct = 100.0 * (r["global_step"] or 0) / r["total_steps"]
        epoch = min((r["epoch"] or 0) + 1, r["epochs"] or 0)
        lines.append(("progress", f"epoch {epoch} of {r['epochs']}, step {r['global_step']} of {r['total_steps']} "
                                  f"({pct:.0f}%) on {r['world_size']} rank(s)"))
    lines.append(("train loss", f"{_num(r['train_loss'], '.4f')} (rank 0's last batch)"))
    best = f"; best {_num(r['best_val_mae'], '.4f')} at epoch {r['best_epoch']}" if r.get("best_epoch") else ""
    lines.append(("val MAE", f"{_num(r['val_mae'], '.4f')}{best}"))
    if r.get("samples_per_s"):
        speed = f"{r['samples_per_s']:,.0f} samples/s, {r['step_time_s'] * 1000:.0f} ms/step"
        if r.get("eta_s") is not None:
            speed += f"; ETA {_ago(r['eta_s'])} (training steps only)"
        lines.append(("speed", speed))
    ckpt = f"{r['checkpoint']} ({_ago(r['checkpoint_age_s'])} old)" if r.get("checkpoint") else "none yet"
    lines.append(("checkpoint", ckpt + (", best.pt" if r.get("best_checkpoint") else "")))
    lines.append(("updated", f"{_ago(r['updated_age_s'])} ago" if r.get("updated_age_s") is not None else "-"))
    lines.append(("disk", _size(r["disk_bytes"])))
    return "\n".join(f"{k:>11}: {v}" for k, v in lines)
