"""`eyeops lens train|eval|recommend` (and `eyeops recommend`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RECOMMEND_HELP = "ask the running lens endpoint about one eye (eyeops recommend = eyeops lens recommend)"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lens = sub.add_parser("lens", help="train and evaluate the vault model over the four ICL sizes")
    cmds = lens.add_subparsers(dest="lens_command", required=True)
    t = cmds.add_parser("train", help="train on a cohort file and save the model folder")
    t.add_argument("cohort", type=Path)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--version", default="dev")
    t.add_argument(
        "--eval", type=Path, default=None, help="a held-out cohort: its metrics go into the manifest"
    )
    _model_options(t)
    t.set_defaults(func=_train)
    e = cmds.add_parser("eval", help="train on A, evaluate on B, print JSON")
    e.add_argument("--train", type=Path, required=True)
    e.add_argument("--test", type=Path, required=True)
    e.add_argument("--json", action="store_true", help="print only the JSON")
    _model_options(e)
    e.set_defaults(func=_eval)
    for parser in (
        cmds.add_parser("recommend", help=RECOMMEND_HELP),
        sub.add_parser("recommend", help=RECOMMEND_HELP),
    ):
        parser.add_argument("eye_id")
        parser.add_argument("--endpoint", default="http://127.0.0.1:8082", help="lens transformer base URL")
        parser.add_argument("--plot", type=Path, default=None, help="write a PNG of the answer here")
        parser.add_argument(
            "--token-file",
            type=Path,
            default=None,
            help="this client's bearer token (default: the local stack's credentials/local-client.token)",
        )
        parser.set_defaults(func=_recommend)


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--date-format",
        default=None,
        help="how the cohort files write dates when not ISO (YYYY-MM-DD), e.g. %%d.%%m.%%Y",
    )
    p.add_argument(
        "--max-quarantined",
        type=float,
        default=0.01,
        help="share of rows with implausible or missing values set aside before the run stops",
    )
    p.add_argument(
        "--step-gain",
        type=float,
        nargs=2,
        default=[330.0, 1100.0],
        metavar=("MIN", "MAX"),
        help="what unsupported sizes' bounds assume: the vault gain per mm of size lies in [MIN, MAX] µm"
        " (default from PMC8101126 and the NK formula; 0 inf gives plain monotone bounds)",
    )
    p.add_argument(
        "--gain-margin",
        default="data",
        help="what anchored bounds assume: the model's vault gain between two sizes is off by at most"
        " this many µm per mm; 'data' (default) estimates it per size from the cohort and falls back"
        " to --step-gain alone where it cannot; inf: --step-gain alone",
    )
    p.add_argument(
        "--gamma",
        type=float,
        default=1.5,
        help="the band from data for unsupported sizes holds if the true odds of a size differ from"
        " the model's by at most this factor either way (1: as estimated)",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=4,
        help="cross-fitting for that band: every eye implanted with an unsupported size is scored by"
        " models fitted without its fold (1: the calibration split only, 4x faster training)",
    )
    p.add_argument("--delta", type=float, default=0.125, help="support threshold on the propensity")
    p.add_argument("--alpha", type=float, default=0.10, help="1 - interval coverage")
    p.add_argument("--seed", type=int, default=0)


def _config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from eyeops.lens.model import LensConfig

    low, high = args.step_gain
    if not 0 <= low <= high:
        raise SystemExit("--step-gain takes MIN MAX with 0 <= MIN <= MAX")
    from_data = str(args.gain_margin).strip().lower() == "data"
    try:
        margin = 200.0 if from_data else float(args.gain_margin)
    except ValueError:
        raise SystemExit("--gain-margin takes 'data', a number of µm per mm, or inf") from None
    if not margin >= 0:
        raise SystemExit("--gain-margin takes 'data', a number of µm per mm (0 or more), or inf")
    if not args.gamma >= 1.0:
        raise SystemExit("--gamma takes a factor of 1 or more (1: the odds as estimated)")
    if args.folds < 1:
        raise SystemExit("--folds takes 1 or more")
    return LensConfig(
        margin_gamma=args.gamma,
        margin_folds=args.folds,
        delta=args.delta,
        alpha=args.alpha,
        seed=args.seed,
        step_gain_um_per_mm=(low, high),
        gain_margin_um_per_mm=margin,
        margin_from_data=from_data,
    )


def _cohort(args: argparse.Namespace, path: Path, say: bool = True):  # type: ignore[no-untyped-def]
    """The cohort at `path`, validated; what was set aside is printed (to stderr with --json)."""
    import sys

    from eyeops.lens.cohort import read_cohort

    check = read_cohort(path, args.date_format, args.max_quarantined)
    if say:
        out = sys.stderr if getattr(args, "json", False) else sys.stdout
        for line in check.report_lines():
            print(f"{path.name}: {line}" if not line.startswith(" ") else line, file=out)
    return check


def _train(args: argparse.Namespace) -> int:
    from eyeops.lens.model import LensModel

    train = _cohort(args, args.cohort)
    model = LensModel.fit(train.frame, _config(args), version=args.version)
    model.manifest["metrics"]["train_cohort"] = train.summary()
    if args.eval is not None:
        from eyeops.lens.evaluate import evaluate, load_params

        held_out = _cohort(args, args.eval)
        model.manifest["metrics"]["eval"] = evaluate(model, held_out.frame, load_params(args.eval))
        model.manifest["metrics"]["eval_cohort"] = str(args.eval)
    model.save(args.out)
    print(f"{args.out}: lens model {model.version}, data {model.manifest['training_data_sha256'][:12]}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import time

    from eyeops.lens.evaluate import evaluate, load_params
    from eyeops.lens.model import LensModel

    train, test = _cohort(args, args.train), _cohort(args, args.test)
    t0 = time.perf_counter()
    model = LensModel.fit(train.frame, _config(args), version=f"eval-{args.train.stem}")
    train_s = time.perf_counter() - t0
    metrics = evaluate(model, test.frame, load_params(args.test))
    metrics["train_seconds"] = round(train_s, 1)
    metrics["train_cohort"], metrics["test_cohort"] = train.summary(), test.summary()
    if not args.json:
        for key, value in metrics.items():
            print(f"{key:40s} {value}")
    print(json.dumps(metrics))
    return 0


def _recommend(args: argparse.Namespace) -> int:
    import httpx

    from eyeops.auth import local_bearer
    from eyeops.lens.plot import plot_recommendation

    headers = local_bearer(args.token_file, "local-client.token")
    response = httpx.post(
        f"{args.endpoint.rstrip('/')}/v1/models/lens:predict",
        json={"instances": [{"eye_id": args.eye_id}]},
        headers=headers,
        timeout=30,
    )
    if response.status_code != 200:
        print(f"{response.status_code}: {response.text}")
        return 1
    answer = response.json()["predictions"][0]
    print(
        f"{answer['eye_id']}: recommended {answer['recommended_size_mm']:.1f} mm"
        f" (nomogram {answer['nomogram_size_mm']:.1f} mm), model {answer['model_version']}"
    )
    for s in answer["sizes"]:
        kind = f"interval, P(250–750) {s['p_in_range']:.2f}" if s["supported"] else "bounds (not supported)"
        print(
            f"  {s['size_mm']:.1f} mm  vault {s['vault_um']:7.0f} µm"
            f"  [{s['lower_um']:5.0f}, {s['upper_um']:5.0f}]  {kind}"
        )
    for s in answer["sizes"]:  # each unsupported size's own assumptions (its margin, or why none)
        if not s["supported"] and s.get("assumes"):
            print(f"  {s['size_mm']:.1f} mm bounds assume: {s['assumes']}")
    if answer.get("stale_feature_views"):
        print(f"  stale features: {', '.join(answer['stale_feature_views'])}")
    if args.plot:
        plot_recommendation(answer, args.plot)
        print(f"plot: {args.plot}")
    return 0
