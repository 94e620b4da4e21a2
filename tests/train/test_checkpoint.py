"""Atomic checkpoints, keep_last, corrupt newest skipped, config mismatch refused."""
import subprocess
import sys
import textwrap

import pytest
import torch

from pgti.errors import UserError
from pgti.train.checkpoint import RESUME_KEYS, CheckpointManager, find_resumable, load_checkpoint


def _state(step, chash="abc"):
    state = {key: 0 for key in RESUME_KEYS}
    state.update(model={"w": torch.full((3,), float(step))}, config_hash=chash, global_step=step)
    return state


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


def test_every_checkpoint_unloadable_is_an_error_not_a_fresh_start(tmp_path, caplog):
    m = CheckpointManager(tmp_path, keep_last=5)
    for step in (1, 2):
        m.save(_state(step), step).write_bytes(b"garbage")
    with caplog.at_level("WARNING"), pytest.raises(UserError, match="none of its 2 checkpoint\\(s\\) loads"):
        find_resumable(m, "abc")
    assert "step-000000001.pt" in caplog.text and "step-000000002.pt" in caplog.text


def test_incomplete_checkpoint_is_skipped_for_resume(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=5)
    m.save(_state(1), 1)
    m.save({"model": {}, "config_hash": "abc"}, 2)  # e.g. a hand-made weights-only file
    path, _ = find_resumable(m, "abc")
    assert path.name == "step-000000001.pt"
    with pytest.raises(UserError, match=r"incomplete pgti checkpoint \(no scaler\)"):
        load_checkpoint(tmp_path / "step-000000002.pt")


@pytest.mark.parametrize("pointer", [b"", b"best.pt\n", b"\xff\xfe", b"../../etc/passwd\n"])
def test_edited_latest_pointer_is_ignored(tmp_path, pointer, caplog):
    m = CheckpointManager(tmp_path, keep_last=5)
    m.save(_state(1), 1)
    m.save_best(_state(1))
    m.latest_pointer.write_bytes(pointer)
    with caplog.at_level("WARNING"):
        assert m.latest() is None
        path, _ = find_resumable(m, "abc")
    assert path.name == "step-000000001.pt" and "ignoring" in caplog.text


def test_a_write_that_fails_keeps_the_previous_checkpoint_and_says_so(tmp_path):
    """A real failing write: the file-size limit (RLIMIT_FSIZE) makes write() fail with EFBIG,
    as a full disk fails with ENOSPC."""
    code = textwrap.dedent(f"""
        import resource, signal, torch
        from pgti.errors import UserError
        from pgti.train.checkpoint import CheckpointManager
        m = CheckpointManager({str(tmp_path)!r})
        m.save({{"model": {{"w": torch.zeros(4)}}}}, 1)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            m.save({{"model": {{"w": torch.zeros(100_000)}}}}, 2)
        except UserError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert message.startswith(f"{tmp_path / 'step-000000002.pt'}: cannot write the checkpoint (File too large)")
    assert "step-000000001.pt is intact" in message and "--resume auto" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-000000001.pt"]  # no temporary left
    assert (tmp_path / "latest").read_text() == "step-000000001.pt\n"


def test_a_config_written_differently_still_resumes_and_a_real_change_is_refused(tmp_path):
    """The job configs stopped restating defaults: a checkpoint made under the explicit
    version (another hash) resumes under the short one, because both train the same; a
    record from before train.loss existed trained masked_mae; a changed value is refused."""
    from pgti.config import config_from_dict, config_hash, to_dict

    def cfg(**train):
        return config_from_dict({"model": {"name": "dcrnn", "params": train.pop("params", {})},
                                 "train": {"schedule": "constant", **train}})

    explicit = cfg(params={"max_diffusion_step": 2}, milestones=[1, 2])  # defaults written out; unused milestones
    short = cfg()
    assert config_hash(explicit) != config_hash(short)
    m = CheckpointManager(tmp_path)
    state = _state(4, chash=config_hash(explicit))
    state["config"] = to_dict(explicit)
    del state["config"]["train"]["loss"]  # recorded before the key existed
    m.save(state, 4)
    path, _ = find_resumable(m, config_hash(short), config=to_dict(short))
    assert path.name == "step-000000004.pt"
    for changed in (cfg(params={"max_diffusion_step": 3}), cfg(loss="masked_mse"), cfg(lr=0.02)):
        with pytest.raises(UserError, match="different configuration"):
            find_resumable(m, config_hash(changed), config=to_dict(changed))


def test_a_resolved_config_is_not_refilled_by_the_recipe(tmp_path):
    """A run's config.toml lacking a key added since (train.loss) keeps the generic default
    the run trained with, not the model's recipe value (A3T-GCN's is masked_mse)."""
    from pgti.config import RESOLVED_HEADER, config_from_dict, load_config, to_toml

    text = to_toml(config_from_dict({"model": {"name": "a3tgcn"}, "train": {"loss": "masked_mae"}}))
    assert text.startswith(RESOLVED_HEADER)
    old = tmp_path / "config.toml"
    old.write_text("\n".join(line for line in text.splitlines() if not line.startswith("loss =")) + "\n")
    assert load_config(old).train.loss == "masked_mae"
    fresh = tmp_path / "mine.toml"
    fresh.write_text('[model]\nname = "a3tgcn"\n')
    assert load_config(fresh).train.loss == "masked_mse"  # a user's own config: the recipe fills it
