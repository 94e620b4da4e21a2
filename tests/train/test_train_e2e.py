"""Real `pgti train` runs: bit-exact resume after SIGKILL, SIGTERM and walltime stops,
evaluate/predict agreement, plots and metrics in the run directory."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from train_helpers import ENV, run_train, train_cmd

from testlib import (
    assert_bitwise_equal,
    final_params,
    metrics_rows,
    pgti_command,
    run_into_closed_pipe,
    run_pgti,
    synth_dataset,
    wait_for_files,
    wait_until,
)

EXIT_RESUBMIT = 75


@pytest.fixture(scope="module")
def reference_run(tiny_data, tmp_path_factory):
    """An uninterrupted 2-epoch run."""
    run_dir = tmp_path_factory.mktemp("runs") / "ref"
    proc = run_train(tiny_data, run_dir)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return run_dir, proc


def test_run_directory_contents(reference_run):
    run_dir, proc = reference_run
    assert (run_dir / "config.toml").is_file()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    for r in rows:
        assert r["samples_per_s"] > 0 and r["peak_rss_bytes_max_rank"] > 0 and "mae" in r["val"]["overall"]
    assert (run_dir / "plots" / "loss.png").stat().st_size > 1000
    assert (run_dir / "plots" / "val_mae.png").stat().st_size > 1000
    log = (run_dir / "train.log").read_text()
    assert "[rank 0/1 node 0]" in log and "epoch 2" in log
    assert "torch thread(s) per rank, malloc heap" in log  # pgti.allocator: freed memory stays in the heap
    assert rows[1]["train_loss"] < rows[0]["train_loss"]  # it learns
    status = pgti_status(run_dir)
    assert status["state"] == "finished" and status["exit_status"] == 0 and "holder" not in status
    assert status["global_step"] == status["total_steps"] == rows[-1]["global_step"]
    best = min(rows, key=lambda r: r["val"]["overall"]["mae"])
    assert status["best_epoch"] == best["epoch"] + 1 and status["val_mae"] == rows[-1]["val"]["overall"]["mae"]
    assert status["checkpoint"] == f"step-{rows[-1]['global_step']:09d}.pt" and status["best_checkpoint"]
    assert not (run_dir / ".lock").exists()  # released at the end


def test_tensorboard_holds_the_run_curves(reference_run):
    """Read back with tensorboard's own EventAccumulator: one loss per step, the epoch rows'
    validation metrics at their global steps, memory, and the config."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = reference_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    for tag in ("train/loss", "train/lr", "train/samples_per_s", "epoch/time_s", "memory/peak_rss_bytes_max_rank",
                "val/mae", "val/rmse", "val/mape", "val_mae/step_03", "val_mape/step_12"):
        assert tag in tags, tags
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, rows[-1]["global_step"] + 1))
    assert [(e.step, e.value) for e in events.Scalars("val/mae")] == [
        (r["global_step"], pytest.approx(r["val"]["overall"]["mae"], rel=1e-6)) for r in rows]
    assert [e.value for e in events.Scalars("val_rmse/step_12")] == [
        pytest.approx(r["val"]["horizon"][11]["rmse"], rel=1e-6) for r in rows]
    assert events.Scalars("memory/peak_rss_bytes_max_rank")[-1].value == pytest.approx(
        rows[-1]["peak_rss_bytes_max_rank"], rel=1e-6)
    assert "config/text_summary" in events.Tags()["tensors"]


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def pgti_status(run_dir: Path) -> dict:
    """`pgti status RUN --json`, checked to import neither torch nor MPI."""
    code = ("import json, sys\nfrom pgti.cli import main\nstatus = main(['status', sys.argv[1], '--json'])\n"
            "assert status == 0 and not {'torch', 'mpi4py', 'horovod'} & set(sys.modules), sorted(sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _status_step(run_dir: Path) -> int:
    """The global step in R/status.json (written whole, atomically), 0 before it exists."""
    try:
        return json.loads((run_dir / "status.json").read_text()).get("global_step", 0)
    except (OSError, ValueError):
        return 0


def tree_digest(run_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(reference_run, tiny_data, tmp_path):
    ref_dir, _ = reference_run
    run_dir = tmp_path / "killed"
    # Same training config; frequent checkpoints are resume-safe settings (not in the config hash).
    cmd = train_cmd(tiny_data, run_dir, "checkpoint.every_steps=4")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    wait_for_files(run_dir / "checkpoints" / "step-000000008.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL  # really killed mid-run, not finished
    status = pgti_status(run_dir)
    assert status["state"] == "killed" and f"(PID {proc.pid}, " in status["reason"], status
    # (its status was written at the step-4 checkpoint at least; the kill may beat step 8's)
    assert status["global_step"] >= 4 and status["checkpoint"] >= "step-000000008.pt"
    resumed = run_train(tiny_data, run_dir, "checkpoint.every_steps=4", "--resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr
    assert "took over the lock left by host" in resumed.stdout + resumed.stderr
    assert_bitwise_equal(final_params(ref_dir), final_params(run_dir))
    assert metrics_rows(run_dir) == metrics_rows(ref_dir)
    # the curves continue where the checkpoint was: every step once, the same values
    for tag in ("train/loss", "train/lr", "val/mae"):
        assert scalars(run_dir, tag) == scalars(ref_dir, tag), tag


def test_a_second_job_is_refused_then_sigterm_checkpoints_for_a_resubmit(tiny_data, tmp_path):
    """The race of two jobs on one run directory: the second `pgti train --resume auto` exits
    2 at once naming the first, whose files stay as they were (the first is paused meanwhile
    so that its own writes cannot hide a change). Then the first is stopped by SIGTERM:
    checkpoint, exit 75, and `pgti status` says so."""
    run_dir = tmp_path / "term"
    proc = subprocess.Popen(train_cmd(tiny_data, run_dir, "checkpoint.every_steps=3", "train.epochs=20"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_files(run_dir / "checkpoints" / "step-*.pt", proc)
        # status.json follows the checkpoint's rename: pausing in between would leave step 0 there
        wait_until(lambda: _status_step(run_dir) >= 3, "status.json at the first checkpoint's step", proc)
        proc.send_signal(signal.SIGSTOP)
        before = tree_digest(run_dir)
        began = time.monotonic()
        second = run_train(tiny_data, run_dir, "checkpoint.every_steps=3", "train.epochs=20", "--resume=auto")
        assert second.returncode == 2, second.stderr[-2000:]
        assert time.monotonic() - began < 30
        error = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(error) == 1 and "in use by another pgti train on host " in error[0], second.stderr
        assert f"(PID {proc.pid}, since " in error[0]
        assert tree_digest(run_dir) == before
        status = pgti_status(run_dir)
        assert status["state"] == "running" and status["holder"]["pid"] == proc.pid, status
        assert status["global_step"] >= 3 and status["checkpoint"] is not None
        assert tree_digest(run_dir) == before  # status only reads
    finally:
        proc.send_signal(signal.SIGCONT)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_RESUBMIT, err[-2000:]
    assert "stopping on SIGTERM" in out + err
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    assert (run_dir / "checkpoints" / latest).is_file()
    status = pgti_status(run_dir)
    assert (status["state"], status["exit_status"], status["reason"]) == ("stopped", EXIT_RESUBMIT, "SIGTERM")
    assert status["checkpoint"] == latest and "resubmit" in status["next"]


def test_time_limit_checkpoints_before_the_limit(tiny_data, tmp_path):
    run_dir = tmp_path / "walltime"
    began = time.time()
    proc = run_train(tiny_data, run_dir, "train.epochs=50", "train.time_limit=10", "checkpoint.every_minutes=0")
    assert proc.returncode == EXIT_RESUBMIT, proc.stderr[-2000:]
    assert time.time() - began < 40
    assert "stopping on walltime" in proc.stdout + proc.stderr
    assert (run_dir / "checkpoints" / "latest").is_file()


def test_evaluate_and_predict_agree(reference_run, tmp_path):
    run_dir, _ = reference_run
    ev = run_pgti("evaluate", run_dir, "--split", "test")
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert "15 min" in ev.stdout and "last-value MAE" in ev.stdout
    metrics = json.loads((run_dir / "metrics_test.json").read_text())
    out = tmp_path / "preds.h5"
    pr = run_pgti("predict", run_dir, "--out", out)
    assert pr.returncode == 0, pr.stderr[-2000:]
    with h5py.File(out) as f:
        pred, target, ts = f["prediction"][()], f["target"][()], f["timestamps"][()]
    mask = target != 0.0
    mae = np.abs(pred.astype(np.float64) - target)[mask].mean()
    assert mae == pytest.approx(metrics["overall"]["mae"], rel=1e-6)
    assert np.all(np.diff(ts, axis=1) == 300)
    per_step = [np.abs(pred[:, h] - target[:, h].astype(np.float64))[mask[:, h]].mean() for h in range(12)]
    assert np.allclose(per_step, [r["mae"] for r in metrics["horizon"]], rtol=1e-6)


def test_max_steps_stop_then_resume_keeps_rows_and_extends_bit_exactly(reference_run, tiny_data, tmp_path):
    """A run stopped by train.max_steps mid-epoch: resuming it as is changes nothing (its rows
    stay), resuming with the limit lifted ends exactly like the uninterrupted run."""
    ref_dir, _ = reference_run
    run_dir = tmp_path / "limited"
    def strip(d):
        return metrics_rows(d, keys=("epoch", "train_loss", "val", "best_val_mae"))
    steps_per_epoch = json.loads((ref_dir / "metrics.jsonl").read_text().splitlines()[0])["global_step"]
    limit = steps_per_epoch + steps_per_epoch // 2  # halfway through the second epoch
    first = run_train(tiny_data, run_dir, f"train.max_steps={limit}")
    assert first.returncode == 0, first.stderr[-3000:]
    rows = strip(run_dir)
    assert [r["epoch"] for r in rows] == [0, 1]  # the partial second epoch has its row
    again = run_train(tiny_data, run_dir, f"train.max_steps={limit}", "--resume=auto")
    assert again.returncode == 0, again.stderr[-3000:]
    assert strip(run_dir) == rows  # nothing left to do: the rows stay as they were
    extended = run_train(tiny_data, run_dir, "train.max_steps=0", "--resume=auto")
    assert extended.returncode == 0, extended.stderr[-3000:]
    assert_bitwise_equal(final_params(ref_dir), final_params(run_dir))
    assert strip(run_dir) == strip(ref_dir)


def test_resume_path_is_checked_against_the_config(reference_run, tiny_data, tmp_path):
    ref_dir, _ = reference_run
    latest = sorted((ref_dir / "checkpoints").glob("step-*.pt"))[-1]
    proc = run_train(tiny_data, tmp_path / "a", "train.lr=0.5", f"--resume={latest}")
    assert proc.returncode == 2 and "made with a different configuration" in proc.stderr, proc.stderr[-2000:]
    proc = run_train(tiny_data, tmp_path / "b", "model.params.hidden_size=16", f"--resume={latest}",
                     "--resume-ignore-config")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{latest}: its weights do not fit this model (size mismatch for" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_another_sensor_set_and_an_empty_split_are_refused(reference_run, tmp_path):
    ref_dir, _ = reference_run
    other = synth_dataset(tmp_path / "other.h5", num_nodes=24, num_steps=1500, seed=3)
    proc = run_pgti("evaluate", ref_dir, "--set", f"data.path={other}")
    assert proc.returncode == 2 and "trained on a dataset with other sensors than" in proc.stderr, proc.stderr
    assert "(20 vs 24)" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_pgti("evaluate", ref_dir, "--split", "test", "--set", "data.ratios=[0.8,0.2,0.0]")
    assert proc.returncode == 2 and "the test split is empty" in proc.stderr, proc.stderr
    proc = run_pgti("evaluate", ref_dir, "--batch-size", "0")
    assert proc.returncode == 2 and "argument --batch-size: 0 must be >= 1" in proc.stderr, proc.stderr


def test_unusable_run_and_output_paths_are_one_line(reference_run, tiny_data, tmp_path):
    ref_dir, _ = reference_run
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    for run_dir, message in ((a_file, "exists and is not a directory"), (a_file / "sub", "cannot create")):
        proc = run_train(tiny_data, run_dir)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = run_pgti("predict", ref_dir, "--out", tmp_path)
    assert proc.returncode == 2 and "is a directory; give a file name" in proc.stderr, proc.stderr


def test_predict_never_overwrites_the_run_or_its_dataset(reference_run, tiny_data, tmp_path):
    """`pgti predict RUN --out X` onto the run's dataset (also as a relative path from
    elsewhere), its checkpoint or its config: exit 2, one line, the file byte-identical."""
    ref_dir, _ = reference_run
    checkpoint = sorted((ref_dir / "checkpoints").glob("step-*.pt"))[-1]
    relative = Path(os.path.relpath(tiny_data, tmp_path))
    # (the absolute dataset path and config.toml: tests/test_outputs.py, without a process each)
    for target, cwd, words in ((relative, tmp_path, "is also an input file"), (checkpoint, None, "is part of the run in")):
        before = (tmp_path / target if cwd else target).read_bytes()
        proc = run_pgti("predict", ref_dir.resolve(), "--out", target, "--force", cwd=cwd)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and words in lines[0], proc.stderr
        assert (tmp_path / target if cwd else target).read_bytes() == before
    for target, words in (("/dev/full", "not a regular file"), ("/proc/x.h5", "cannot write in /proc")):
        proc = run_pgti("predict", ref_dir, "--out", target, "--force")
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and words in lines[0], proc.stderr
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # (as root the old rename replaced the device)


def test_runs_never_mix_in_one_directory(reference_run, tiny_data, tmp_path):
    """A --resume PATH from elsewhere into a directory with checkpoints is refused like a fresh
    start (keep_last would delete the new run's files), nothing is written there; a fresh start
    where no checkpoint exists drops an earlier start's metrics rows."""
    import shutil

    ref_dir, _ = reference_run
    run_dir = tmp_path / "copy"
    shutil.copytree(ref_dir, run_dir)
    log_before = (run_dir / "train.log").read_text()
    other = tmp_path / "other.pt"
    shutil.copy(sorted((ref_dir / "checkpoints").glob("step-*.pt"))[0], other)
    for extra in ([], [f"--resume={other}"]):
        proc = run_train(tiny_data, run_dir, *extra)
        assert proc.returncode == 2 and "holds an earlier run's checkpoints" in proc.stderr, proc.stderr[-2000:]
    assert (run_dir / "train.log").read_text() == log_before  # refused before any logging
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "metrics.jsonl").write_text('{"epoch": 0, "train_loss": 99.0}\n')
    proc = run_train(tiny_data, stale)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (stale / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1] and rows[0]["train_loss"] != 99.0


def test_evaluate_needs_no_training_batch_and_survives_an_edited_pointer(reference_run, tmp_path):
    import shutil

    ref_dir, _ = reference_run
    proc = run_pgti("evaluate", ref_dir, "--split", "val", "--set", "train.batch_size=100000")
    assert proc.returncode == 0, proc.stderr  # the training split's batch check is for training only
    run_dir = tmp_path / "copy"
    shutil.copytree(ref_dir, run_dir)
    (run_dir / "checkpoints" / "latest").write_text("garbage\n")
    proc = run_pgti("evaluate", run_dir, "--checkpoint", "latest")
    newest = sorted((run_dir / "checkpoints").glob("step-*.pt"))[-1].name
    assert proc.returncode == 0 and f"({newest}," in proc.stdout, proc.stdout + proc.stderr
    # a corrupt newest checkpoint (and best.pt): the previous one, with a warning, as --resume auto does
    steps = sorted((run_dir / "checkpoints").glob("step-*.pt"))
    for path in (steps[-1], run_dir / "checkpoints" / "best.pt"):
        path.write_bytes(path.read_bytes()[:1000])
    for which in ("latest", "best"):
        proc = run_pgti("evaluate", run_dir, "--checkpoint", which)
        assert proc.returncode == 0 and f"({steps[-2].name}," in proc.stdout, proc.stdout + proc.stderr
        assert f"skipping checkpoint {steps[-1].name}: " in proc.stderr and "trying the previous one" in proc.stderr


def test_training_needs_a_validation_split(tiny_data, tmp_path):
    proc = run_train(tiny_data, tmp_path / "run", "data.ratios=[0.8,0.0,0.2]")
    assert proc.returncode == 2 and "the validation split is empty" in proc.stderr, proc.stderr[-2000:]


def test_evaluate_into_a_closed_pipe_is_no_traceback(reference_run):
    ref_dir, _ = reference_run
    done = run_into_closed_pipe(pgti_command("evaluate", ref_dir))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr


def test_train_loss_key_chooses_the_loss_the_loop_trains_with(tiny_data, tmp_path):
    """train.loss reaches the step: the same two steps score the squared error under
    masked_mse (speeds of tens of mph: far above the absolute error) and the MAE otherwise."""
    losses = {}
    for name in ("masked_mae", "masked_mse"):
        run_dir = tmp_path / name
        proc = run_train(tiny_data, run_dir, f"train.loss={name}", "train.max_steps=2", "log.plots=false")
        assert proc.returncode == 0, proc.stderr[-2000:]
        losses[name] = metrics_rows(run_dir)[-1]["train_loss"]
    assert losses["masked_mse"] > 4 * losses["masked_mae"] > 0, losses


def test_no_checkpoint_at_the_step_limit_before_its_epoch_row(tiny_data, tmp_path):
    """At train.max_steps the one checkpoint of that step is end_epoch's, written after the
    epoch's metrics row: a periodic one before it would look finished to --resume auto, so a
    kill during that validation lost the partial epoch's row (seen as a flaky W=2 kill test)."""
    run_dir = tmp_path / "limit"
    proc = run_train(tiny_data, run_dir, "train.max_steps=6", "checkpoint.every_steps=3", "log.plots=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (run_dir / "train.log").read_text()
    assert log.count("checkpoint step-000000003.pt") == 1  # periodic, mid-epoch
    assert log.count("checkpoint step-000000006.pt") == 1  # the step limit: end_epoch's only
    assert log.index("epoch 1: train loss") < log.index("checkpoint step-000000006.pt")


def test_status_says_early_stopped(tiny_data, tmp_path):
    """lr 0: validation never improves after the first epoch, so patience 1 stops at epoch 2."""
    run_dir = tmp_path / "patience"
    proc = run_train(tiny_data, run_dir, "train.lr=0", "train.patience=1", "train.epochs=5", "log.plots=false",
                     "log.tensorboard=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = pgti_status(run_dir)
    assert (status["state"], status["exit_status"], status["epoch"]) == ("early-stopped", 0, 2), status
