"""The one output rule (pgti.outputs), through the commands that write: nothing is lost to a
mistyped path. Every refusal is exit 2 with one line, and the file it would have replaced is
byte-identical afterwards. (`pgti predict` onto a run's own files: tests/train/test_train_e2e.py.)"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pgti.errors import UserError
from pgti.outputs import check_output, write_text_output
from testlib import synth_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return synth_dataset(tmp_path_factory.mktemp("outputs") / "t.h5", num_nodes=6, num_steps=300, seed=1)


def one_line_refusal(result, *words) -> str:
    status, out, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, (status, err)
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_an_existing_file_needs_force_and_is_replaced_atomically(pgti_cli, data, tmp_path):
    out = tmp_path / "copy.h5"
    out.write_bytes(b"precious")
    one_line_refusal(pgti_cli("data", "synth", "--steps", "300", "--out", out, "--quiet"), "exists; add --force")
    assert out.read_bytes() == b"precious"
    assert pgti_cli("data", "synth", "--steps", "300", "--out", out, "--quiet", "--force")[0] == 0
    assert out.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["copy.h5"]  # no temporary file left


def test_a_device_a_directory_and_an_unwritable_place_are_one_line(pgti_cli, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("replacing /dev/full needs root: as another user the rename fails anyway")
    one_line_refusal(pgti_cli("data", "synth", "--out", "/dev/full", "--force", "--quiet"), "not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # still the device
    one_line_refusal(pgti_cli("data", "synth", "--out", "/proc/x.h5", "--quiet"), "cannot write in /proc")
    one_line_refusal(pgti_cli("data", "synth", "--out", tmp_path, "--quiet"), "is a directory")
    assert list(tmp_path.iterdir()) == []


def test_an_import_never_writes_onto_its_inputs_or_into_a_directory(pgti_cli, tmp_path):
    import numpy as np

    values, adj = tmp_path / "node_values.npy", tmp_path / "adj_mat.npy"
    np.save(values, np.random.default_rng(0).random((50, 4)).astype(np.float32) + 1)
    np.save(adj, np.eye(4, dtype=np.float32))
    before = values.read_bytes()
    link = tmp_path / "hard-link.npy"
    os.link(values, link)
    for target, words in ((values, ["is also an input file"]), (link, ["is also an input file"]),
                          (tmp_path, ["is a directory"])):
        one_line_refusal(pgti_cli("data", "import", "pgt", values, adj, "--out", target, "--start", "2024-01-01",
                                  "--interval", "300", "--force"), *words)
    assert values.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adj_mat.npy", "hard-link.npy", "node_values.npy"]


def test_run_state_and_symlinked_inputs_are_refused(data, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text("")
    for name in ("checkpoints/step-000000003.pt", "checkpoints/best.pt", "config.toml", "metrics.jsonl", ".lock"):
        with pytest.raises(UserError, match="is part of the run in"):
            check_output(run / name, force=True)
    check_output(run / "preds.h5")  # the run directory itself may hold outputs
    alias = tmp_path / "alias.h5"
    alias.symlink_to(data)
    with pytest.raises(UserError, match="is also an input file"):
        check_output(alias, force=True, reads=[data])


def test_bench_outputs_are_checked_before_the_benchmark_runs(pgti_cli, data, tmp_path):
    one_line_refusal(pgti_cli("bench", "memory", "--data", data, "--chart", "/proc/x.png"), "--chart /proc/x.png")
    one_line_refusal(pgti_cli("bench", "memory", "--data", data, "--json", data, "--force"), "is also an input file")
    one_line_refusal(pgti_cli("bench", "all", "--out", "/proc/x"), "cannot create /proc/x")
    one_line_refusal(pgti_cli("bench", "all", "--out", data), "exists and is not a directory")
    earlier = tmp_path / "bench"
    earlier.mkdir()
    write_text_output(earlier / "results.json", "{}")
    one_line_refusal(pgti_cli("bench", "all", "--out", earlier, "--quick"), "earlier run; add --force")
    assert (earlier / "results.json").read_text() == "{}"
