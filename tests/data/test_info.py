"""`pgti data info`: the summary a user reads."""
import numpy as np

from pgti.data.format import open_dataset, read_signals
from pgti.data.info import missing_fractions


def test_info_prints_the_summary(make_dataset, pgti_cli):
    path = make_dataset(T=400, N=6, C=2, missing=0.1)
    status, out, err = pgti_cli("data", "info", path)
    assert status == 0, err
    for text in ("T=400", "N=6", "C=2", "[c0, c1]", "every 300 s", "directed edges", "out-degree",
                 "raw float32 array", "materialized 12-in/12-out windows", "missing", "2012-03-01"):
        assert text in out, (text, out)


def test_missing_fraction_matches_numpy(make_dataset):
    info = open_dataset(make_dataset(T=700, N=5, C=2, missing=0.2, seed=9))
    expected = (read_signals(info) == 0.0).mean(axis=(0, 1))
    np.testing.assert_allclose(missing_fractions(info), expected)
