"""Data integrity (pgti.data.verify): a corrupted chunk of a checksummed dataset, and finite
garbage outside a channel's plausible range, are one line naming the file and where, from
`data info`, `data verify` and `train` (also under mpirun -np 2, without a hang); an old file
without checksums still loads, with a note."""
from __future__ import annotations

import subprocess

import h5py
import numpy as np
import pytest

from testlib import mpirun_command, run_pgti, synth_dataset, train_command


def corrupt_chunk(path, index: int) -> tuple[int, int]:
    """Flip a byte inside chunk `index` of /signals, as a bad disk block would; returns the
    chunk's step range."""
    with h5py.File(path, "r") as f:
        signals = f["signals"]
        assert signals.fletcher32  # pgti writes checksums
        chunk = signals.id.get_chunk_info(index)
        first, steps = chunk.chunk_offset[0], signals.chunks[0]
    with open(path, "r+b") as fh:
        fh.seek(chunk.byte_offset + chunk.size // 2)
        byte = fh.read(1)
        fh.seek(chunk.byte_offset + chunk.size // 2)
        fh.write(bytes([byte[0] ^ 0x5A]))
    return first, first + steps


def one_line(proc, returncode=2) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "pgti: error" in line]
    assert proc.returncode == returncode and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


@pytest.fixture
def dataset(tmp_path):
    return synth_dataset(tmp_path / "d.h5", num_nodes=8, num_steps=900, seed=5)


def tiny_train(data, run_dir):
    return train_command(data, run_dir, "model.name=dcrnn-pgt", "train.batch_size=8", "train.max_steps=2",
                         "log.plots=false", "log.tensorboard=false")


@pytest.mark.mpi
def test_a_corrupted_chunk_is_named_by_info_verify_and_train(dataset, tmp_path):
    first, last = corrupt_chunk(dataset, 1)
    where = f"checksum mismatch (fletcher32) in steps [{first}, {last})"
    for args in (("data", "info", dataset), ("data", "verify", dataset)):
        assert where in one_line(run_pgti(*args))
    single = subprocess.run(tiny_train(dataset, tmp_path / "one"), capture_output=True, text=True, timeout=120)
    assert where in one_line(single)
    both = subprocess.run(mpirun_command(2) + tiny_train(dataset, tmp_path / "two"), capture_output=True, text=True,
                          timeout=120)
    assert both.returncode == 2 and both.stderr.count(where) == 1, both.stderr[-3000:]


def test_finite_garbage_outside_the_plausible_range_is_refused(dataset, tmp_path):
    with h5py.File(dataset, "r+") as f:
        f["signals"][500, 3, 0] = np.frombuffer(b"\x7e" * 4, dtype=np.float32)[0]  # 8.5e37: bytes of 0x7e
    message = one_line(run_pgti("data", "info", dataset))
    assert "speed reading 8.45702e+37 at step 500" in message and "sensor" in message and "[0, 200]" in message
    assert "speed reading 8.45702e+37 at step 500" in one_line(run_pgti("data", "verify", dataset))
    train = subprocess.run(tiny_train(dataset, tmp_path / "run"), capture_output=True, text=True, timeout=120)
    assert "speed reading 8.45702e+37 at step 500" in one_line(train)  # it used to train to exit 0
    with h5py.File(dataset, "r+") as f:  # a dataset that declares its own range
        f.attrs["valid_max"] = np.array([1e38], dtype=np.float64)
    assert run_pgti("data", "verify", dataset).returncode == 0


def test_an_old_file_without_checksums_loads_with_a_note(dataset):
    with h5py.File(dataset, "r+") as f:  # as files were written before checksums
        values, chunks = f["signals"][()], f["signals"].chunks
        del f["signals"]
        f.create_dataset("signals", data=values, chunks=chunks, maxshape=(None, *values.shape[1:]))
    info = run_pgti("data", "info", dataset)
    assert info.returncode == 0 and "no checksums" in info.stdout, info.stderr
    verify = run_pgti("data", "verify", dataset)
    assert verify.returncode == 0 and "note:" in verify.stdout and "has no checksums" in verify.stdout
