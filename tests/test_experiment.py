"""Experiments between registry aliases: a customer's variant is a stable hash, the shares hold over many ids, and a
bad definition is refused naming what is wrong."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from hmrec.registry.experiment import (
    Experiment,
    ExperimentError,
    bucket,
    parse_variant,
    read_experiment,
    remove_experiment,
    write_experiment,
)

TEN_PERCENT = Experiment("exp-a", (("champion", 0.9), ("challenger", 0.1)))


def test_the_bucket_is_sha256_of_name_and_customer_pinned():
    # sha256(b"exp-a\0" + b"a" * 64) starts 4f88688020779194 (sha256sum gives the same); over 2^64:
    assert bucket("exp-a", "a" * 64) == 0x4F88688020779194 / 2**64 == pytest.approx(0.3106751740)
    assert bucket("exp-a", "b" * 64) == pytest.approx(0.8808404392)
    assert bucket("exp-b", "a" * 64) != bucket("exp-a", "a" * 64)  # another experiment, another split


def test_a_customer_gets_the_same_variant_in_every_process():
    ids = [f"customer-{n}" for n in range(200)]
    here = [TEN_PERCENT.variant_of(c) for c in ids]
    code = ("from hmrec.registry.experiment import Experiment as E; "
            "e = E('exp-a', (('champion', 0.9), ('challenger', 0.1))); "
            "print(','.join(e.variant_of(f'customer-{n}') for n in range(200)))")
    for seed in ("1", "2"):  # Python's own hash would differ between these two
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
        assert out.split(",") == here


@pytest.mark.parametrize("shares", [(0.9, 0.1), (0.5, 0.3, 0.2), (0.99, 0.01)])
def test_the_shares_hold_over_many_customers(shares):
    experiment = Experiment("split", tuple((f"v{i}", share) for i, share in enumerate(shares)))
    n = 100_000
    counts = {alias: 0 for alias in experiment.aliases}
    for number in range(n):
        counts[experiment.variant_of(f"{number:064x}")] += 1
    for alias, share in experiment.variants:
        sigma = math.sqrt(share * (1 - share) / n)  # binomial: 4 sigma misses about 1 run in 16,000
        assert abs(counts[alias] / n - share) < 4 * sigma, (alias, counts[alias] / n, share)


def test_the_variants_lie_in_order_on_the_unit_interval():
    # a customer's point below 0.9 is the champion's, above it the challenger's: the order of the variants counts
    for customer in ("a" * 64, "b" * 64, "x", "y", "z"):
        expected = "champion" if bucket("exp-a", customer) < 0.9 else "challenger"
        assert TEN_PERCENT.variant_of(customer) == expected
    assert TEN_PERCENT.default == "champion"
    assert Experiment("e", (("blue", 0.5), ("green", 0.5))).default == "blue"


@pytest.mark.parametrize(("variants", "message"), [
    ((("champion", 0.9), ("challenger", 0.2)), "the shares sum to 1.1, not 1"),
    ((("champion", 1.0), ("champion", 0.0)), "a variant is named twice; every share must be in (0, 1], got [1.0, 0.0]"),
    ((("no spaces", 1.0),), "1 variant(s) are not registry alias names (e.g. 'no spaces')"),
    ((), "no variant is named"),
])
def test_a_bad_experiment_is_refused_saying_why(variants, message):
    with pytest.raises(ExperimentError) as error:
        Experiment("e", variants)
    assert str(error.value) == f"experiment 'e': {message}"


def test_variants_are_parsed_as_fractions_or_percentages():
    assert parse_variant("champion=0.9") == ("champion", 0.9)
    assert parse_variant("challenger=10%") == ("challenger", 0.1)
    with pytest.raises(ExperimentError, match=r"^--variant 'champion' is not ALIAS=SHARE, e\.g\. champion=0\.9"):
        parse_variant("champion")


def test_the_file_round_trips_and_a_damaged_one_names_itself_and_the_fix(tmp_path):
    path = tmp_path / "experiment.json"
    assert read_experiment(path) is None
    write_experiment(path, TEN_PERCENT)
    assert read_experiment(path) == TEN_PERCENT
    path.write_text('{"name": "x", "variants": [{"alias": "champion", "share": 0.5}]}')
    with pytest.raises(ExperimentError, match=f"^{path} is not a valid experiment .*the shares sum to 0.5, not 1.*"
                                              "`hmrec experiment stop`$"):
        read_experiment(path)
    assert remove_experiment(path) is None and not path.exists()
