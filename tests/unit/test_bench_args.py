"""Benchmarks' `--smoke`: one run, no warm-up, the smallest sizes; explicit options otherwise as given."""

from __future__ import annotations

from benchmarks._common import parse_args

EXTRA = [(("--warmup",), {"type": int, "default": 1}), (("--domains",), {"type": int, "default": 500})]


def test_smoke_means_one_run_no_warmup_smallest_sizes() -> None:
    args = parse_args("b", EXTRA, smoke={"domains": 20}, argv=["--smoke", "--json"])
    assert (args.runs, args.warmup, args.domains, args.json) == (1, 0, 20, True)


def test_without_smoke_the_defaults_stay() -> None:
    args = parse_args("b", EXTRA, smoke={"domains": 20}, argv=["--runs", "3"])
    assert (args.runs, args.warmup, args.domains, args.smoke) == (3, 1, 500, False)
