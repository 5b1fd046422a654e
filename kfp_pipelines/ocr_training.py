"""The `ocr-training` pipeline: synthesize (or take labelled) crops → train or fine-tune the TrOCR
recogniser → evaluate field accuracy against Tesseract on held-out exams (and the champion on the
same exams) → export a Triton model repository → gate → register (→ roll out). The components call
eyeops.ocr.*, the code the OCR service runs. See kfp_pipelines/common.py for images and local runs.
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from kfp_pipelines.common import MODELS_PVC, _component, on_models_volume, register_step, restricted


@_component
def prepare_crops(
    crops_uri: str,
    exams: int,
    seed: int,
    variety: str,
    device_kinds: str,
    mix_classic: int,
    inputs_sha256: str,
    crops: Output[Dataset],
) -> None:
    """Labelled crops from `crops_uri` (a CropSet .npz, e.g. reviewed production fields), or crops of
    `exams` synthetic training exams cut by the transformer's own align/crop code: `variety` classic,
    broad, or reference (values written into each onboarded kind's own reference image), for the
    comma-separated `device_kinds` (all when empty); either way plus `mix_classic` classic exams of
    every kind (replay, so that a fine-tune on one device's reviewed crops keeps reading the others)."""
    import os
    from pathlib import Path

    from eyeops.devices import load_layouts
    from eyeops.ocr.dataset import CropSet, build_crop_set, training_layouts

    workers = min(4, os.cpu_count() or 1)
    if crops_uri:
        import hashlib
        import json

        # `inputs_sha256` (filled by `eyeops pipelines run`) keys this step's cache on the file's
        # content: the labelled set is rewritten at the same path as reviewers work.
        expected = json.loads(inputs_sha256 or "{}").get("crops_uri")
        if expected and hashlib.sha256(Path(crops_uri).read_bytes()).hexdigest() != expected:
            raise ValueError(f"{crops_uri} changed since this run was started; start it again")
        data = CropSet.load(Path(crops_uri))
    else:
        if variety not in ("classic", "broad", "reference"):
            raise ValueError(f"variety {variety!r}: send classic, broad or reference")
        kinds = [k.strip() for k in device_kinds.split(",") if k.strip()]
        layouts = training_layouts(load_layouts(), kinds, variety)  # type: ignore[arg-type]
        data = build_crop_set(layouts, exams, seed, "train", workers=workers, variety=variety)  # type: ignore[arg-type]
    if mix_classic:  # replayed beside labelled crops too, so a fine-tune does not forget the rest
        data = data.concat(build_crop_set(load_layouts(), mix_classic, seed, "train", workers=workers))
    if len(data) == 0:
        raise ValueError("no crops: every exam failed to align, or the labelled set is empty")
    data.save(Path(crops.path))
    source = (crops_uri or f"synthetic {variety} seed {seed} kinds {device_kinds or 'all'}") + (
        f" + {mix_classic} classic" if mix_classic else ""
    )
    crops.metadata.update({"crops": len(data), "source": source})


@_component
def train_recognizer(
    crops: Input[Dataset],
    init_checkpoint: str,
    registry_root: str,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    max_minutes: float,
    model: Output[Model],
    metrics: Output[Metrics],
) -> None:
    """Fine-tune the champion ("champion"; the shipped checkpoint on a first run), train from
    scratch ("scratch"), or continue from a checkpoint folder."""
    from pathlib import Path

    from eyeops.ocr.dataset import CropSet
    from eyeops.ocr.offline import MODEL_NAME
    from eyeops.ocr.train import TrainConfig, train
    from eyeops.registry import ModelRegistry
    from eyeops.resources import trocr_checkpoint

    init: str | None = init_checkpoint
    if init_checkpoint == "champion":
        champion = ModelRegistry(Path(registry_root)).champion("ocr")
        init = str(champion.path / MODEL_NAME / "1" / "checkpoint") if champion else str(trocr_checkpoint())
    elif init_checkpoint == "scratch":
        init = None
    config = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup=min(300, max(1, steps // 10)),
        seed=seed,
        max_minutes=max_minutes,
        init=init,
    )
    result = train(CropSet.load(Path(crops.path)), None, config, Path(model.path), log=False)
    for key, value in result.items():
        metrics.log_metric(key, float(value))
    model.metadata.update({"init": init or "scratch", "steps": int(result["steps"])})


@_component
def evaluate_recognizer(
    model: Input[Model],
    exams: int,
    seed: int,
    registry_root: str,
    heldout_crops_uri: str,
    metrics: Output[Metrics],
    report: Output[HTML],
) -> str:
    """Field and exam accuracy on held-out exams, as served (with the second recogniser and the
    arbitration), against Tesseract and the champion on the same exams, with both recognisers'
    reliability diagrams in the report; with `heldout_crops_uri` (held-out reviewed crops of the
    clinic's traffic, `eyeops ocr harvest`), both read those per device kind too, and the gate
    refuses a candidate that reads any kind worse. Returns the evaluation as JSON for the gate."""
    import json
    from pathlib import Path

    from eyeops.devices import load_layouts
    from eyeops.ocr.arbitrate import shipped_calibrations
    from eyeops.ocr.dataset import CropSet
    from eyeops.ocr.model import load_recognizer
    from eyeops.ocr.offline import MODEL_NAME, compare_with_tesseract, evaluation_html, held_out_exams
    from eyeops.ocr.peers import CtcRecognizer
    from eyeops.ocr.traffic import crop_accuracy_per_kind
    from eyeops.registry import ModelRegistry

    heldout = CropSet.load(Path(heldout_crops_uri)) if heldout_crops_uri else None
    layouts = load_layouts()
    records: list[dict[str, object]] = []
    calibrations = shipped_calibrations()
    peer = CtcRecognizer.load()
    candidate = load_recognizer(Path(model.path))
    result = compare_with_tesseract(
        candidate,
        layouts,
        held_out_exams(layouts, exams, seed),
        ppocr=peer,
        calibrations=calibrations,
        records=records,
    )
    if heldout is not None:
        result["heldout_crops"] = crop_accuracy_per_kind(candidate, heldout)
    champion = ModelRegistry(Path(registry_root)).champion("ocr")
    if champion is not None:
        checkpoint = champion.path / MODEL_NAME / "1" / "checkpoint"
        served = load_recognizer(checkpoint)
        result["champion_same_set"] = compare_with_tesseract(
            served,
            layouts,
            held_out_exams(layouts, exams, seed),
            tesseract=False,
            ppocr=peer,
            calibrations=calibrations,
        )
        if heldout is not None:
            result["champion_same_set"]["heldout_crops"] = crop_accuracy_per_kind(served, heldout)
        result["champion_version"] = champion.version
    result["eval_exams"], result["eval_seed"] = exams, seed
    for key in (
        "field_accuracy",
        "exam_accuracy",
        "silent_error_rate",
        "review_rate",
        "tesseract_field_accuracy",
        "tesseract_exam_accuracy",
    ):
        metrics.log_metric(key, float(result[key]))
    with open(report.path, "w") as handle:
        handle.write(evaluation_html(result, records, calibrations))
    return json.dumps(result)


@_component
def export_model_repository(model: Input[Model], repository: Output[Model]) -> None:
    """The checkpoint as a Triton model repository: what a storageUri for the Triton runtime loads."""
    from pathlib import Path

    from eyeops.ocr.offline import export_model_repository as export

    export(Path(model.path), Path(repository.path))
    repository.metadata.update({"format": "triton-model-repository", "model": "trocr"})


@dsl.pipeline(
    name="ocr-training",
    description="crops → train/fine-tune TrOCR → evaluate vs Tesseract → export Triton repository → register",
)
def ocr_training(
    registry_root: str,
    version: str,
    crops_uri: str = "",
    heldout_crops_uri: str = "",
    train_exams: int = 5000,
    train_seed: int = 0,
    train_variety: str = "classic",
    device_kinds: str = "",
    mix_classic: int = 0,
    init_checkpoint: str = "champion",
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 3e-4,
    max_minutes: float = 120.0,
    eval_exams: int = 300,
    eval_seed: int = 1000,
    registry_uri_prefix: str = "",
    inference_service: str = "",
    namespace: str = "",
    canary_percent: int = 100,
    inputs_sha256: str = "",
    models_pvc: str = MODELS_PVC,
) -> None:
    crops = prepare_crops(
        crops_uri=crops_uri,
        inputs_sha256=inputs_sha256,
        exams=train_exams,
        seed=train_seed,
        variety=train_variety,
        device_kinds=device_kinds,
        mix_classic=mix_classic,
    )
    on_models_volume(crops, models_pvc)
    trained = train_recognizer(
        crops=crops.outputs["crops"],
        init_checkpoint=init_checkpoint,
        registry_root=registry_root,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=train_seed,
        max_minutes=max_minutes,
    )
    trained.set_caching_options(False)  # "champion" resolves at run time: never answer from a cache
    on_models_volume(trained, models_pvc)
    evaluated = evaluate_recognizer(
        model=trained.outputs["model"],
        exams=eval_exams,
        seed=eval_seed,
        registry_root=registry_root,
        heldout_crops_uri=heldout_crops_uri,
    )
    evaluated.set_caching_options(False)  # it reads the champion, which changes between runs
    on_models_volume(evaluated, models_pvc)
    exported = export_model_repository(model=trained.outputs["model"])
    restricted(exported)
    register_step(
        exported.outputs["repository"],
        evaluated.outputs["Output"],
        "ocr",
        registry_root,
        version,
        registry_uri_prefix,
        models_pvc,
        inference_service,
        namespace,
        canary_percent,
    )
