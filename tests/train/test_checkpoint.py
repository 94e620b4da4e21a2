"""Atomic checkpoints, keep_last, corrupt newest skipped, config mismatch refused."""
import pytest
import torch

from pgti.errors import UserError
from pgti.train.checkpoint import CheckpointManager, find_resumable


def _state(step, chash="abc"):
    return {"model": {"w": torch.full((3,), float(step))}, "config_hash": chash, "global_step": step}


def test_keep_last_latest_pointer_and_best(tmp_path):
    m = CheckpointManager(tmp_path / "ck", keep_last=2)
    for step in (5, 10, 15):
        m.save(_state(step), step)
    assert [p.name for p in m.step_checkpoints()] == ["step-000000015.pt", "step-000000010.pt"]
    assert m.latest().name == "step-000000015.pt"
    m.save_best(_state(10))
    assert m.best_path.exists()
    assert not [p for p in (tmp_path / "ck").iterdir() if ".tmp" in p.name]  # no temporaries left


def test_corrupt_newest_is_skipped_with_a_warning(tmp_path, caplog):
    m = CheckpointManager(tmp_path, keep_last=5)
    m.save(_state(1), 1)
    newest = m.save(_state(2), 2)
    newest.write_bytes(newest.read_bytes()[:40])  # truncated, e.g. by a full disk in an old version
    with caplog.at_level("WARNING"):
        path, state = find_resumable(m, "abc")
    assert path.name == "step-000000001.pt" and state["global_step"] == 1
    assert "step-000000002.pt" in caplog.text


def test_config_mismatch_is_an_error_unless_ignored(tmp_path):
    m = CheckpointManager(tmp_path)
    m.save(_state(3, chash="other"), 3)
    with pytest.raises(UserError, match="different configuration"):
        find_resumable(m, "abc")
    path, _ = find_resumable(m, "abc", ignore_config=True)
    assert path.name == "step-000000003.pt"
    assert find_resumable(CheckpointManager(tmp_path / "empty"), "abc") is None
