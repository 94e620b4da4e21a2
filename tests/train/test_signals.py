"""Stop requests from signals, and the walltime margin."""
import os
import signal

from pgti.train.signals import Deadline, StopRequest


def test_sigusr1_and_sigterm_set_the_flag_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert stop.reason is None
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.reason == "SIGUSR1"
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.reason == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before


def test_deadline_keeps_a_measured_margin(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_END_TIME", raising=False)
    d = Deadline.from_environment(started=1000.0, time_limit_seconds=100)
    assert d.end == 1100.0 and not d.expired(now=1090.0)  # margin is the 5 s floor before any step
    d.record_step(3.0)
    d.record_checkpoint(2.0)
    assert d.margin == 2 * (3 + 2) + 5
    assert d.expired(now=1086.0) and not d.expired(now=1084.0)
    monkeypatch.setenv("SLURM_JOB_END_TIME", "1050")
    assert Deadline.from_environment(1000.0, 100).end == 1050.0
    assert Deadline(1000.0).expired(now=10**12) is False


def test_a_second_sigint_interrupts_training_but_not_the_checkpoint(capfd):
    import pytest

    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.reason == "SIGINT"
        with pytest.raises(KeyboardInterrupt):  # still training: the second Ctrl-C means "now"
            os.kill(os.getpid(), signal.SIGINT)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        stop.committed = True  # the ranks agreed to stop: the checkpoint is being written
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.reason == "SIGINT"
    assert "already checkpointing after the first interrupt; it exits with 75 when done" in capfd.readouterr().err
