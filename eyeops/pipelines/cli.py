"""`eyeops pipelines compile|run`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from eyeops.settings import Settings, source_checkout

COMPILED_DIR = "kfp_pipelines/compiled"
NAMES = ("lens-training", "ocr-training", "detector-fitting")
SCHEDULES = "k8s/pipelines/recurring-runs.yaml"


def pipelines() -> dict[str, Any]:
    from kfp_pipelines.detector_fitting import detector_fitting
    from kfp_pipelines.lens_training import lens_training
    from kfp_pipelines.ocr_training import ocr_training

    return {
        "lens-training": lens_training,
        "ocr-training": ocr_training,
        "detector-fitting": detector_fitting,
    }


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("pipelines", help="compile, run locally, or submit the Kubeflow pipelines")
    cmds = p.add_subparsers(dest="pipelines_command", required=True)
    c = cmds.add_parser("compile", help=f"write the compiled YAML (committed, in {COMPILED_DIR})")
    c.add_argument(
        "--out", type=Path, default=None, help=f"default in a checkout: {COMPILED_DIR} (committed)"
    )
    c.add_argument("--check", action="store_true", help="fail if the committed YAML is stale")
    c.set_defaults(func=_compile)
    r = cmds.add_parser("run", help="run a pipeline locally (kfp.local) or submit it to a KFP endpoint")
    r.add_argument("name", choices=NAMES)
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true")
    where.add_argument("--host", default=None, help="KFP endpoint URL")
    r.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="pipeline argument")
    r.add_argument(
        "--pipeline-root", type=Path, default=None, help="local outputs (default: <data dir>/pipelines)"
    )
    r.add_argument("--no-cache", action="store_true")
    r.set_defaults(func=_run)
    s = cmds.add_parser("schedule", help="create the declared recurring runs on a KFP endpoint")
    s.add_argument("--host", required=True, help="KFP endpoint URL")
    s.add_argument(
        "--file", type=Path, default=None, help=f"the recurring runs (default in a checkout: {SCHEDULES})"
    )
    s.set_defaults(func=_schedule)


def compile_all(out: Path) -> dict[str, str]:
    """Compile every pipeline to `out/<name>.yaml`; returns the YAML texts."""
    import tempfile

    from kfp import compiler

    out.mkdir(parents=True, exist_ok=True)
    texts = {}
    for name, pipeline in pipelines().items():
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / f"{name}.yaml"
            compiler.Compiler().compile(pipeline, str(target))
            texts[name] = target.read_text()
        (out / f"{name}.yaml").write_text(texts[name])
    return texts


def pipeline_body(text: str) -> str:
    """A compiled pipeline without the SDK's own `sdkVersion` line: a KFP patch release that
    compiles the same pipeline identically apart from that stamp is not a stale pipeline."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("sdkVersion:"))


def checkout_file(given: Path | None, relative: str, option: str) -> Path:
    """`given`, or `relative` inside the source checkout; an installed eyeops needs it given."""
    if given is not None:
        return given
    checkout = source_checkout()
    if checkout is None:
        raise SystemExit(f"{option} is required outside a source checkout (its default is {relative} there)")
    return checkout / relative


def _compile(args: argparse.Namespace) -> int:
    if args.check:
        import tempfile

        from eyeops.resources import compiled_pipelines

        out = args.out or compiled_pipelines()  # the committed YAML (the package's, when installed)
        with tempfile.TemporaryDirectory() as tmp:
            fresh = compile_all(Path(tmp))
        stale = [
            n
            for n, text in fresh.items()
            if not (out / f"{n}.yaml").exists()
            or pipeline_body((out / f"{n}.yaml").read_text()) != pipeline_body(text)
        ]
        if stale:
            print(f"stale compiled pipelines: {', '.join(stale)}; run `eyeops pipelines compile` and commit")
            return 1
        print("compiled pipelines are up to date")
        return 0
    out = checkout_file(args.out, COMPILED_DIR, "--out")
    for name in compile_all(out):
        print(f"{out / (name + '.yaml')}")
    return 0


def _arguments(pairs: list[str], pipeline: Any) -> dict[str, Any]:
    """KEY=VALUE pairs typed by the pipeline's own inputs (a string stays a string: version=1)."""
    inputs = pipeline.component_spec.inputs or {}
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"--arg takes KEY=VALUE, got {pair!r}")
        if key not in inputs:
            raise SystemExit(f"{pipeline.name} has no input {key!r}; its inputs: {', '.join(inputs)}")
        kind = str(inputs[key].type).upper()
        values[key] = raw if "STRING" in kind else json.loads(raw)
    return values


def _run(args: argparse.Namespace) -> int:
    pipeline = pipelines()[args.name]
    arguments = _arguments(args.arg, pipeline)
    if args.host:
        import kfp

        client = kfp.Client(host=args.host)
        run = client.create_run_from_pipeline_func(pipeline, arguments=arguments)
        print(f"submitted {args.name}: run {run.run_id}")
        return 0
    import os

    from kfp import local

    settings = Settings()
    # Locally the detectors step runs the detectors environment's interpreter (its image on a cluster).
    if settings.detectors_python.exists():
        os.environ.setdefault("EYEOPS_DETECTORS_PYTHON", str(settings.detectors_python))
    root = args.pipeline_root or settings.data_dir / "pipelines"
    print(f"pipeline outputs: {root}", flush=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        enable_caching=not args.no_cache,  # a re-run after an interruption reuses finished steps
    )
    pipeline(**arguments)
    print(f"{args.name} finished; outputs under {root}")
    return 0


def add_registry_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reg = sub.add_parser("registry", help="list, promote and roll back registered model versions")
    reg.add_argument("--root", type=Path, default=None, help="registry folder (default var/registry)")
    cmds = reg.add_subparsers(dest="registry_command", required=True)
    ls = cmds.add_parser("list", help="versions with their key metrics; * marks the champion")
    ls.add_argument("model")
    ls.set_defaults(func=_registry_list)
    pr = cmds.add_parser("promote", help="make a version the champion (a person overriding the gate)")
    pr.add_argument("model")
    pr.add_argument("version")
    pr.add_argument("--note", required=True, help="why; kept in the promotion history")
    pr.set_defaults(func=_registry_promote)
    rb = cmds.add_parser("rollback", help="make the previous champion the champion again")
    rb.add_argument("model")
    rb.set_defaults(func=_registry_rollback)


def _registry(args: argparse.Namespace) -> Any:
    from eyeops.registry import ModelRegistry
    from eyeops.settings import Settings

    return ModelRegistry(args.root or Settings().data_dir / "registry")


def _registry_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    champion = registry.champion(args.model)
    for version in registry.versions(args.model):
        entry = registry.get(args.model, version)
        nan = float("nan")
        mae, coverage = entry.metrics.get("mae_um", nan), entry.metrics.get("coverage_factual", nan)
        in_range = entry.metrics.get("in_range_rate_recommended", nan)
        mark = "*" if champion is not None and champion.version == version else " "
        print(
            f"{mark} {version:16s} MAE {mae:6.1f} µm  coverage {coverage:.3f}  in range {in_range:.3f}"
            f"  {entry.storage_uri}"
        )
    return 0


def _registry_promote(args: argparse.Namespace) -> int:
    chosen = _registry(args).promote(args.model, args.version, args.note)
    print(f"{args.model} champion: {chosen.version} ({chosen.storage_uri})")
    return 0


def _registry_rollback(args: argparse.Namespace) -> int:
    chosen = _registry(args).rollback(args.model)
    print(f"{args.model} champion: {chosen.version} ({chosen.storage_uri})")
    return 0


def load_schedules(path: Path) -> dict[str, Any]:
    """The recurring-runs file, checked against the pipelines' own inputs."""
    import yaml

    spec = yaml.safe_load(path.read_text())
    known = pipelines()
    names = set()
    for run in spec["runs"]:
        if run["pipeline"] not in known:
            raise SystemExit(f"{path}: {run['name']} names unknown pipeline {run['pipeline']!r}")
        if run["name"] in names:
            raise SystemExit(f"{path}: recurring run {run['name']!r} is declared twice")
        names.add(run["name"])
        inputs = known[run["pipeline"]].component_spec.inputs or {}
        unknown = sorted(set(run["arguments"]) - set(inputs))
        if unknown:
            raise SystemExit(
                f"{path}: {run['name']} passes {', '.join(unknown)}, not inputs of {run['pipeline']}"
            )
        required = {k for k, v in inputs.items() if v.default is None and not v.optional}
        missing = sorted(required - set(run["arguments"]))
        if missing:
            raise SystemExit(f"{path}: {run['name']} lacks required {', '.join(missing)}")
        if len(str(run["cron"]).split()) != 6:
            raise SystemExit(f"{path}: {run['name']} cron {run['cron']!r} needs KFP's six fields")
    return dict(spec)


def _schedule(args: argparse.Namespace) -> int:
    import kfp

    from eyeops.resources import compiled_pipelines

    spec = load_schedules(checkout_file(args.file, SCHEDULES, "--file"))
    client = kfp.Client(host=args.host)
    experiment = client.create_experiment(spec["experiment"]) if spec.get("experiment") else None
    existing = {r.display_name for r in (client.list_recurring_runs(page_size=1000).recurring_runs or [])}
    compiled = compiled_pipelines()
    for run in spec["runs"]:
        if run["name"] in existing:
            print(f"{run['name']}: exists, left as it is")
            continue
        client.create_recurring_run(
            experiment_id=experiment.experiment_id if experiment else None,
            job_name=run["name"],
            cron_expression=run["cron"],
            max_concurrency=run.get("max_concurrency", 1),
            pipeline_package_path=str(compiled / f"{run['pipeline']}.yaml"),
            params=dict(run["arguments"]),
        )
        print(f"{run['name']}: created ({run['cron']})")
    return 0
