"""`pgti train` under a real `mpirun`: ranks agree bit for bit, engines agree, a killed W=2
run resumes bit-exactly, partitioned placement trains like replicated, errors end every rank."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from testlib import (
    assert_bitwise_equal,
    assert_state_close,
    final_params,
    latest_checkpoint,
    metrics_rows,
    mpirun_command,
    rank_pid,
    ranks_agree,
    run_mpi_nodes,
    signal_after_log,
    synth_dataset,
    train_command,
)

RUN = ["model.name=dcrnn-pgt", "train.batch_size=16", "train.epochs=2", "train.max_steps=24",
       "train.shuffle=local", "log.every_steps=4", "log.plots=false", "data.prefetch=false"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return synth_dataset(tmp_path_factory.mktemp("mpidata") / "d.h5", num_nodes=24, num_steps=800, seed=5)


def command(world, data, run_dir, *extra):
    return mpirun_command(world) + train_command(data, run_dir, *RUN, *extra)


def train(world, data, run_dir, *extra, env=None, timeout=240):
    proc = subprocess.run(command(world, data, run_dir, *extra), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def horovod_w2(data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("hvd") / "run"
    train(2, data, run_dir, "dist.engine=horovod")
    return run_dir


@pytest.mark.mpi
def test_horovod_ranks_hold_identical_parameters(horovod_w2):
    assert ranks_agree(horovod_w2, 2)
    log = (horovod_w2 / "train.log").read_text()
    assert "[rank 0/2 node 0]" in log and "malloc heap" in log  # under mpirun too


@pytest.mark.mpi
def test_ddp_ranks_agree_and_match_horovod(horovod_w2, data, tmp_path):
    run_dir = tmp_path / "ddp"
    train(2, data, run_dir, "dist.engine=ddp")
    assert ranks_agree(run_dir, 2)
    assert_state_close(final_params(horovod_w2), final_params(run_dir), rtol=1e-4, atol=1e-5)


@pytest.mark.mpi
def test_w2_killed_after_a_checkpoint_resumes_bit_exactly(horovod_w2, data, tmp_path):
    for attempt in range(3):  # the run is short: on a busy machine it may end before the kill lands
        run_dir = tmp_path / f"killed{attempt}"
        proc = subprocess.Popen(command(2, data, run_dir, "dist.engine=horovod", "checkpoint.every_steps=3"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.time() + 120
        while not (run_dir / "checkpoints" / "step-000000009.pt").exists() and proc.poll() is None:
            assert time.time() < deadline, "no step-9 checkpoint after 120 s"
            time.sleep(0.01)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # mpirun and both ranks, at once
        except ProcessLookupError:
            pass
        _, err = proc.communicate(timeout=30)
        if proc.returncode == -signal.SIGKILL:
            break
        assert proc.returncode == 0, err.decode(errors="replace")[-3000:]  # a crash is a failure, not a retry
    else:
        pytest.fail("three runs ended before SIGKILL reached them")
    train(2, data, run_dir, "dist.engine=horovod", "checkpoint.every_steps=3", "--resume=auto")
    assert_bitwise_equal(final_params(horovod_w2), final_params(run_dir))
    # ... and the same metrics: the resumed epoch's train loss counts every rank's part once
    assert metrics_rows(run_dir) == metrics_rows(horovod_w2)


@pytest.mark.mpi
def test_partitioned_placement_trains_exactly_like_replicated(data, tmp_path, virtual_hosts):
    def on_two_nodes(run_dir, placement):  # one rank per node: two node-shared arrays
        args = train_command(data, run_dir, *RUN, f"data.placement={placement}")[1:]
        proc = run_mpi_nodes(virtual_hosts, 2, 1, args, timeout=240)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc

    on_two_nodes(tmp_path / "rep", "replicated")
    part = on_two_nodes(tmp_path / "part", "partitioned")
    assert_bitwise_equal(final_params(tmp_path / "rep"), final_params(tmp_path / "part"))
    assert "2 node(s)" in part.stdout


@pytest.mark.mpi
def test_bad_data_path_ends_all_three_ranks_with_one_message(tmp_path):
    began = time.time()
    proc = subprocess.run(command(3, tmp_path / "missing.h5", tmp_path / "run"), capture_output=True, text=True,
                          timeout=60)
    assert time.time() - began < 30
    assert proc.returncode == 2
    text = proc.stdout + proc.stderr
    assert text.count("missing.h5: no such file") == 1, text
    assert "Traceback" not in text


@pytest.mark.mpi
@pytest.mark.parametrize("extra, message", [
    (["train.lrr=0.1"], "--set train.lrr: unknown key (did you mean 'lr'?)"),  # config: parsed by rank 0
    (["data.input_steps=5000"], "the train split is empty"),  # the split: checked by rank 0
    (["train.batch_size=5000"], "config: train.batch_size = 5000"),
])
def test_config_and_split_mistakes_print_once_on_three_ranks(data, tmp_path, extra, message):
    proc = subprocess.run(command(3, data, tmp_path / "run", *extra), capture_output=True, text=True, timeout=60)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert text.count(message) == 1 and text.count("pgti: error") == 1, text
    assert "Traceback" not in text


@pytest.mark.mpi
def test_weights_of_another_model_and_a_new_run_over_old_checkpoints_are_refused(horovod_w2, data, tmp_path):
    import shutil

    latest = sorted((horovod_w2 / "checkpoints").glob("step-*.pt"))[-1]
    proc = subprocess.run(command(2, data, tmp_path / "other", "model.params.K=2", f"--resume={latest}",
                                  "--resume-ignore-config"), capture_output=True, text=True, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert text.count("its weights do not fit this model (size mismatch for") == 1 and "Traceback" not in text, text
    run_dir = tmp_path / "copy"
    shutil.copytree(horovod_w2, run_dir)
    before = {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()}
    proc = subprocess.run(command(2, data, run_dir), capture_output=True, text=True, timeout=120)  # no --resume
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2 and text.count("holds an earlier run's checkpoints") == 1, text
    assert {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()} == before  # untouched


@pytest.mark.mpi
def test_a_signal_to_one_rank_stops_all_three_with_its_name(data, tmp_path):
    """SIGTERM to rank 2 alone (e.g. a node's OOM watchdog or a site's cleanup): every rank
    checkpoints at the same step, exits 75, and the log names the signal (it said walltime)."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(command(3, data, run_dir, "train.max_steps=100000", "train.epochs=1000",
                                    "log.every_steps=1", "log.progress=lines"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = run_dir / "train.log"
    out = signal_after_log(proc, log, r"epoch 1 step [2-9]/",  # an epoch has 11 steps here
                           lambda: os.kill(rank_pid(run_dir, 2), signal.SIGTERM))
    text = log.read_text()
    assert proc.returncode == 75, out + text
    assert "stopping on SIGTERM" in text and "stopping on walltime" not in text, text
    assert list((run_dir / "checkpoints").glob("step-*.pt")), text


@pytest.mark.mpi
def test_resume_with_another_world_size_continues(horovod_w2, data, tmp_path):
    import shutil

    run_dir = tmp_path / "w1"
    shutil.copytree(horovod_w2, run_dir)
    # The W=2 run stopped at max_steps=24; continue it on one rank to 30 steps.
    proc = subprocess.run(train_command(data, run_dir, *RUN, "train.max_steps=30", "--resume=auto"),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "resuming with 1 ranks from a 2-rank checkpoint" in text
    state = latest_checkpoint(run_dir)
    assert state["global_step"] == 30 and state["world_size"] == 1
