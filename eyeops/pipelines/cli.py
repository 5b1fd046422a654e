"""`eyeops pipelines compile|run`."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from eyeops.settings import Settings, source_checkout

COMPILED_DIR = "kfp_pipelines/compiled"
NAMES = ("lens-training", "ocr-training", "detector-fitting")
SCHEDULES = "k8s/pipelines/recurring-runs.yaml"
# The component images as the pipelines name them (kfp_pipelines/common.py): no registry host.
OUR_IMAGE = re.compile(r"^(\s+image: )(eyeops/[a-z0-9-]+:[A-Za-z0-9._-]+)$", re.MULTILINE)
REGISTRY_HELP = (
    "registry the cluster pulls eyeops images from, put in front of the component images "
    "(the chart's imageRegistry; default: none, as committed)"
)


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
    c.add_argument("--image-registry", default="", help=REGISTRY_HELP)
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
    r.add_argument("--image-registry", default="", help=REGISTRY_HELP + "; with --host")
    r.add_argument(
        "--fail-on-reject",
        action="store_true",
        help="exit 1 when the gate does not promote the new version (for CI and schedulers)",
    )
    r.set_defaults(func=_run)
    s = cmds.add_parser("schedule", help="create the declared recurring runs on a KFP endpoint")
    s.add_argument("--host", required=True, help="KFP endpoint URL")
    s.add_argument(
        "--file", type=Path, default=None, help=f"the recurring runs (default in a checkout: {SCHEDULES})"
    )
    s.add_argument("--image-registry", default="", help=REGISTRY_HELP)
    s.set_defaults(func=_schedule)


def with_image_registry(text: str, registry: str) -> str:
    """A compiled pipeline whose eyeops component images are pulled from `registry` (a host, or a
    host and path), as the chart's `imageRegistry` does for its own images. Empty: unchanged."""
    registry = registry.strip().rstrip("/")
    if not registry:
        return text
    if "://" in registry or any(c.isspace() for c in registry):
        raise SystemExit(f"--image-registry {registry!r}: give a registry host (and path), no scheme")
    replaced, count = OUR_IMAGE.subn(lambda m: f"{m.group(1)}{registry}/{m.group(2)}", text)
    if count == 0:
        raise SystemExit("no eyeops component image found in the compiled pipeline")
    return replaced


def compile_all(out: Path, image_registry: str = "") -> dict[str, str]:
    """Compile every pipeline to `out/<name>.yaml`; returns the YAML texts."""
    import tempfile

    from kfp import compiler

    out.mkdir(parents=True, exist_ok=True)
    texts = {}
    for name, pipeline in pipelines().items():
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / f"{name}.yaml"
            compiler.Compiler().compile(pipeline, str(target))
            texts[name] = with_image_registry(target.read_text(), image_registry)
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
    if args.image_registry and args.out is None:
        raise SystemExit("--image-registry needs --out: the committed YAML names no registry")
    out = checkout_file(args.out, COMPILED_DIR, "--out")
    for name in compile_all(out, args.image_registry):
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


def input_fingerprints(arguments: dict[str, Any], pipeline: Any) -> tuple[dict[str, Any], list[str]]:
    """Fill the pipeline's `inputs_sha256` with the SHA-256 of every `*_uri` argument that is a file
    here, so that a step's cache follows the file's content (a changed file at the same path is read
    again). Returns the arguments and the `*_uri` arguments that could not be hashed."""
    import hashlib

    inputs = pipeline.component_spec.inputs or {}
    if "inputs_sha256" not in inputs or "inputs_sha256" in arguments:
        return arguments, []
    hashes, unhashed = {}, []
    for key, value in arguments.items():
        if not key.endswith("_uri") or not isinstance(value, str) or not value:
            continue
        path = Path(value)
        if path.is_file():
            hashes[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            unhashed.append(key)
    return {**arguments, "inputs_sha256": json.dumps(hashes, sort_keys=True)}, unhashed


def decision_of(
    arguments: dict[str, Any], root: Path, name: str
) -> tuple[bool, list[str], Path | None] | None:
    """What the gate decided for the version this run registered, and the decision report's path."""
    from eyeops.registry import ModelRegistry, RegistryError

    model = {"lens-training": "lens", "ocr-training": "ocr", "detector-fitting": "detectors"}[name]
    if "registry_root" not in arguments or "version" not in arguments:
        return None
    try:
        entry = ModelRegistry(Path(arguments["registry_root"])).get(model, str(arguments["version"]))
    except RegistryError:
        return None
    reports = sorted(root.glob("**/decision"), key=lambda p: p.stat().st_mtime)
    return (
        bool(entry.metadata.get("gate_promoted")),
        list(entry.metadata.get("gate_reasons", [])),
        (reports[-1] if reports else None),
    )


def _run(args: argparse.Namespace) -> int:
    pipeline = pipelines()[args.name]
    arguments, unhashed = input_fingerprints(_arguments(args.arg, pipeline), pipeline)
    if args.host:
        import kfp

        caching = not args.no_cache and not unhashed
        if unhashed:
            print(f"{', '.join(unhashed)}: not a file here, so not hashed; step caching is off for this run")
        import tempfile

        client = kfp.Client(host=args.host)
        with tempfile.TemporaryDirectory() as tmp:
            package = Path(tmp) / f"{args.name}.yaml"
            package.write_text(compile_all(Path(tmp), args.image_registry)[args.name])
            run = client.create_run_from_pipeline_package(
                str(package), arguments=arguments, enable_caching=caching
            )
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
    decided = decision_of(arguments, root, args.name)
    if decided is None:
        return 0
    promoted, reasons, report = decided
    print(f"{'PROMOTED' if promoted else 'NOT PROMOTED'}: {args.name} version {arguments['version']}")
    for reason in reasons:
        print(f"  - {reason}")
    if report is not None:
        print(f"decision report: {report}")
    return 1 if args.fail_on_reject and not promoted else 0


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
    cn = cmds.add_parser(
        "canary",
        help="a Knative-mode InferenceService's canary: show it, finish it (100%%) or undo it (0%%)",
        description="status: the model, canaryTrafficPercent and the traffic per revision KServe reports. "
        "finish: the new revision takes all traffic. undo: all traffic goes back to the previously "
        "rolled-out revision (KServe pins it there; then roll the registry back and promote again). "
        "Uses the pod's service account in a cluster, else your kubeconfig.",
    )
    cn.add_argument("action", choices=["status", "finish", "undo"])
    cn.add_argument("inference_service", help="ocr or lens")
    cn.add_argument("--namespace", "-n", required=True)
    cn.set_defaults(func=_registry_canary)
    sd = cmds.add_parser(
        "seed",
        help="a first install's models: the shipped OCR checkpoint (and a lens model on simulated eyes)",
        description="Register version `seed` of ocr (the shipped checkpoint) and, with --lens-eyes, of "
        "lens (trained on simulated eyes, a placeholder until lens-training runs on the clinic's cohort); "
        "each becomes the champion only where there is none. Running it again changes nothing.",
    )
    sd.add_argument("--root", type=Path, default=argparse.SUPPRESS, help="registry folder (as above)")
    sd.add_argument(
        "--lens-eyes", type=int, default=0, help="train a seed lens model on this many simulated eyes"
    )
    sd.add_argument(
        "--reference", type=Path, default=None, help="also write the detectors' drift reference (.npz) here"
    )
    sd.add_argument(
        "--uri-prefix", default="", help="print storage URIs under this prefix (pvc://eyeops-models/registry)"
    )
    sd.set_defaults(func=_registry_seed)
    rg = cmds.add_parser(
        "register", help="register a model folder as a new version (e.g. a fitted detector set)"
    )
    rg.add_argument("model")
    rg.add_argument("version")
    rg.add_argument("folder", type=Path)
    rg.add_argument("--promote", action="store_true", help="make it the champion where there is none yet")
    rg.add_argument("--note", default="registered by hand", help="kept with the version")
    rg.add_argument("--exist-ok", action="store_true", help="a version that exists is left as it is")
    rg.set_defaults(func=_registry_register)


def _registry(args: argparse.Namespace) -> Any:
    from eyeops.registry import ModelRegistry
    from eyeops.settings import Settings

    return ModelRegistry(args.root or Settings().data_dir / "registry", getattr(args, "uri_prefix", ""))


def _registry_seed(args: argparse.Namespace) -> int:
    from eyeops.pipelines.seed import seed_registry

    if args.lens_eyes < 0 or args.lens_eyes == 1:
        raise SystemExit("--lens-eyes: 0 (no lens model) or at least 2")
    seed_registry(_registry(args), lens_eyes=args.lens_eyes, reference=args.reference)
    return 0


def _registry_register(args: argparse.Namespace) -> int:
    registry = _registry(args)
    if args.exist_ok and args.version in registry.versions(args.model):
        print(f"{args.model} {args.version}: already registered, left as it is")
    else:
        registry.register(args.model, args.version, args.folder, {}, note=args.note)
        print(f"{args.model} {args.version}: registered")
    if args.promote and registry.champion(args.model) is None:
        chosen = registry.promote(args.model, args.version, args.note)
        print(f"{args.model} champion: {chosen.version} ({chosen.storage_uri})")
    return 0


def gate_word(metadata: dict[str, Any]) -> str:
    """What the gate said of a registered version: promoted, refused, or not gated (older records)."""
    if "gate_promoted" not in metadata:
        return "not gated"
    return "gate: promoted" if metadata["gate_promoted"] else "gate: REFUSED"


def _registry_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    champion = registry.champion(args.model)
    standing = registry.lineage(args.model)
    for version in registry.versions(args.model):
        entry = registry.get(args.model, version)
        nan = float("nan")
        mae, coverage = entry.metrics.get("mae_um", nan), entry.metrics.get("coverage_factual", nan)
        in_range = entry.metrics.get("in_range_rate_recommended", nan)
        mark = "*" if champion is not None and champion.version == version else " "
        gate = gate_word(entry.metadata)
        reasons = "; ".join(entry.metadata.get("gate_reasons", []))
        print(
            f"{mark} {version:16s} MAE {mae:6.1f} µm  coverage {coverage:.3f}  in range {in_range:.3f}"
            f"  {gate:14s} {entry.storage_uri}"
        )
        if entry.metadata.get("gate_promoted") is False and reasons:
            print(f"    refused because: {reasons}")
    if standing:
        print(f"champions, newest last (rollback goes to the one before): {' → '.join(standing)}")
    return 0


def _registry_promote(args: argparse.Namespace) -> int:
    chosen = _registry(args).promote(args.model, args.version, args.note)
    print(f"{args.model} champion: {chosen.version} ({chosen.storage_uri})")
    return 0


def _registry_canary(args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException

    from eyeops.registry.deploy import canary_state, kube_api, set_canary_traffic

    api = kube_api()
    try:
        if args.action == "status":
            state = canary_state(api, args.inference_service, args.namespace)
        else:
            percent = 100 if args.action == "finish" else 0
            state = set_canary_traffic(api, args.inference_service, args.namespace, percent)
    except ApiException as exc:
        raise SystemExit(
            f"the Kubernetes API answered {exc.status} {exc.reason} for InferenceService "
            f"{args.namespace}/{args.inference_service}; check the name, the namespace and your access"
        ) from exc
    print(state.describe())
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
    import tempfile

    compiled = compiled_pipelines()
    if args.image_registry:
        compiled = Path(tempfile.mkdtemp(prefix="eyeops-pipelines-"))
        compile_all(compiled, args.image_registry)
    for run in spec["runs"]:
        if run["name"] in existing:
            print(f"{run['name']}: exists, left as it is")
            continue
        client.create_recurring_run(
            # A scheduled run re-reads files that change at the same path: no step from a cache.
            enable_caching=False,
            experiment_id=experiment.experiment_id if experiment else None,
            job_name=run["name"],
            cron_expression=run["cron"],
            max_concurrency=run.get("max_concurrency", 1),
            pipeline_package_path=str(compiled / f"{run['pipeline']}.yaml"),
            params=dict(run["arguments"]),
        )
        print(f"{run['name']}: created ({run['cron']})")
    return 0
