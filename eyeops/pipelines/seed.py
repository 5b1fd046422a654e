"""`eyeops registry seed`: a first install's models volume, so that the services have something to
serve before any pipeline has run.

- `ocr/seed`: the recogniser checkpoint shipped in the package, exported as the Triton model
  repository the OCR InferenceService loads (eyeops.ocr.offline.export_model_repository).
- `lens/seed` (with `lens_eyes`): a lens model trained on that many *simulated* eyes. It lets the lens
  service, the monitor and the detector-fitting pipeline come up; it has never seen a patient of the
  clinic, says so in its metadata, and is replaced by the first lens-training run on the clinic's
  cohort (whose gate compares against it on the clinic's own test eyes).
- a drift reference (with `reference`): the lens champion's answers on fresh simulated eyes, the
  `.npz` that `python -m eyeops_detectors fit` turns into a detector set in the detectors image;
  `eyeops registry register detectors seed DIR --promote` then registers that set.

Each is registered once (a second run leaves what exists as it is) and promoted only where the model
has no champion yet, so re-running the seed never displaces a model a pipeline promoted.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eyeops import __version__
from eyeops.registry.store import ModelRegistry, ModelVersion

SEED = "seed"


def _register_once(
    registry: ModelRegistry,
    model: str,
    build: Callable[[Path], Path],
    note: str,
    say: Callable[[str], None],
    **metadata: Any,
) -> ModelVersion:
    if SEED in registry.versions(model):
        entry = registry.get(model, SEED)
        say(f"{model} {SEED}: already registered, left as it is")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            entry = registry.register(model, SEED, build(Path(tmp)), {}, note=note, **metadata)
        say(f"{model} {SEED}: registered ({note})")
    champion = registry.champion(model)
    if champion is None:
        registry.promote(model, SEED, note)
        say(f"{model} champion: {SEED} ({entry.storage_uri})")
    else:
        say(f"{model} champion: {champion.version}, kept ({champion.storage_uri})")
    return entry


def seed_registry(
    registry: ModelRegistry,
    lens_eyes: int = 0,
    reference: Path | None = None,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> None:
    """Register (and, where there is no champion yet, promote) the seed versions; write the drift
    reference when asked. See the module's docstring."""
    from eyeops.ocr.offline import export_model_repository
    from eyeops.resources import trocr_checkpoint

    def ocr_repository(tmp: Path) -> Path:
        return export_model_repository(trocr_checkpoint(), tmp / "repository")

    _register_once(
        registry, "ocr", ocr_repository, f"the recogniser checkpoint shipped with eyeops {__version__}", say
    )
    if lens_eyes:
        from eyeops.lens.cohort import simulate_cohort
        from eyeops.lens.model import LensModel

        def lens_model(tmp: Path) -> Path:
            LensModel.fit(simulate_cohort(lens_eyes, seed), version=SEED).save(tmp / "model")
            return tmp / "model"

        note = f"trained on {lens_eyes} simulated eyes for a first install: replace it by lens-training"
        _register_once(registry, "lens", lens_model, note, say, synthetic=True, simulated_eyes=lens_eyes)
    if reference is not None:
        write_reference(registry, reference, max(lens_eyes, 2000), seed + 1)
        say(f"drift reference: {reference} (fit it in the detectors image, then register it)")


def write_reference(registry: ModelRegistry, out: Path, eyes: int, seed: int) -> Path:
    """The lens champion's answers on `eyes` simulated eyes, as the detectors' reference `.npz`."""
    import numpy as np

    from eyeops.lens.cohort import simulate_cohort
    from eyeops.lens.model import LensModel
    from eyeops.monitoring.reference import lens_reference, save_reference

    champion = registry.champion("lens")
    if champion is None:
        raise SystemExit("a drift reference needs a lens champion: seed one with --lens-eyes N")
    arrays = lens_reference(LensModel.load(champion.path), simulate_cohort(eyes, seed))
    if "mae_um" in champion.metrics:
        arrays["training_mae_um"] = np.asarray(champion.metrics["mae_um"], dtype=np.float64)
    return save_reference(arrays, out)
