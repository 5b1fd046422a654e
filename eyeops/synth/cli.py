"""`eyeops synth cohort`: a simulated ICL cohort with its true counterfactual outcomes."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    synth = sub.add_parser("synth", help="synthetic data with ground truth")
    cmds = synth.add_subparsers(dest="synth_command", required=True)
    c = cmds.add_parser("cohort", help="simulated ICL cohort (.parquet or .csv), eyeops.lens.cohort")
    c.add_argument("--n", type=int, required=True, help="number of eyes")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument(
        "--no-counterfactuals", action="store_true", help="leave out vault_um_<size> (as real data would)"
    )
    c.set_defaults(func=_cohort)


def _cohort(args: argparse.Namespace) -> int:
    import json

    from eyeops.lens.cohort import COUNTERFACTUAL_COLUMNS, CohortParams, simulate_cohort, write_cohort
    from eyeops.lens.evaluate import params_sidecar

    params = CohortParams()
    cohort = simulate_cohort(args.n, args.seed, params)
    if args.no_counterfactuals:
        cohort = cohort.drop(columns=list(COUNTERFACTUAL_COLUMNS))
    write_cohort(cohort, args.out)
    # The parameters beside the file let `eyeops lens eval` compute the oracle (true function) error.
    params_sidecar(args.out).write_text(json.dumps({**params.to_dict(), "seed": args.seed, "n": args.n}))
    sizes = cohort["implanted_size_mm"].value_counts().sort_index()
    print(f"{args.out}: {len(cohort)} eyes of {cohort['patient_id'].nunique()} patients; implanted sizes:")
    for size, count in sizes.items():
        print(f"  {size:.1f} mm  {count:6d}  ({count / len(cohort):.1%})")
    return 0
