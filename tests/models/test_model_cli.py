"""`pgti info model` on a small dataset file (`pgti bench model`: tests/bench/test_model_bench.py)."""
import torch


def test_info_model_prints_parameters_and_memory(make_dataset, pgti_cli):
    path = make_dataset(T=120, N=9, C=1)
    status, out, err = pgti_cli("info", "model", "dcrnn-pgt", "--data", path, "--batch-size", "4")
    assert status == 0, err
    assert "parameters   150 " in out  # 1 channel + time of day = 2 in, 2 out: PGT-I's size
    assert "peak for one batch of 4" in out and "measured as:" in out
    # the recipe as the config keys `--set` takes, exactly what a config of this model resolves to
    assert "recipe       train.optimizer=adam, train.lr=0.001, train.eps=1e-08," in out
    assert "train.grad_clip=0.0" in out and "train.loss=masked_mae" in out


def test_info_model_user_errors(make_dataset, pgti_cli):
    path = make_dataset(T=120, N=9, C=1)
    status, _, err = pgti_cli("info", "model", "dcrnn", "--data", path, "--set", "units=3")
    assert status == 2 and "no hyper-parameter 'units'" in err
    status, _, err = pgti_cli("info", "model", "dcrnn", "--data", path, "--set", "oops")
    assert status == 2 and "KEY=VALUE" in err
    if not torch.cuda.is_available():
        status, _, err = pgti_cli("info", "model", "dcrnn", "--data", path, "--device", "cuda")
        assert status == 2 and "CUDA" in err
