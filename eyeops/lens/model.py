"""The vault model over the four ICL sizes, for training, evaluation and serving (the bounds of
unsupported sizes and the recommendation, pure functions of arrays, are in eyeops.lens.bounds).

- Vault: LightGBM with the size as a numeric feature under a +1 monotone constraint, so every
  eye's predicted vault is non-decreasing in size (monotone treatment response, Manski 1997).
- Propensity e_s(x) = P(size = s | x): a LightGBM multinomial classifier, calibrated (isotonic,
  3-fold). Size s is *supported* at x when e_s(x) ≥ δ (default 1/(2J) = 0.125, Yoshida et al. 2019).
- Supported sizes get a (1 − α) conformal interval. Our own weighted split conformal, not MAPIE:
  the calibration residuals of the eyes that received s are weighted by 1 / e_s(x) (Tibshirani et
  al. 2019, covariate shift from the eyes that got s to all eyes), which MAPIE 1.6's split
  regressors do not take. P(vault in 250–750 µm) comes from the same weighted residuals.
- Unsupported sizes get bounds from the supported sizes' intervals under two assumptions: monotone
  treatment response, and a bounded response per size step (between two sizes of one eye, the vault
  gains `step_gain_um_per_mm` per mm of size: from half the published population slope, 657 µm/mm
  (PMC8101126), to 1.5 × the NK formula's 729 µm/mm). So a size above the largest supported one is
  bounded by that size's interval plus the gain its step allows, instead of [its lower limit, 2000].
  (0, inf) gives plain monotone bounds; an eye whose intervals contradict the assumption gets those.
- Recommended size: the supported size with the highest P(in range); ties (within 0.005) go to the
  predicted vault nearest 500 µm.
- Expected error before the outcome (direct loss estimation, as NannyML's DLE): a small LightGBM
  regressor of |residual| on the calibration eyes' features, predicted vault and implanted size.
  Those residuals are out of sample for the vault model; the estimator's own quality is measured by
  cross-fitting it over patient folds of the calibration split (manifest metrics `dle_*`), and the
  served one is fitted on all calibration eyes. It answers E|vault − predicted| per eye and size;
  by construction it sees covariate shift only, never a changed outcome function (concept shift).
- Each calibration eye's coverage flag (its implanted size's interval covered its vault), out of
  sample: the radius is the weighted conformal quantile of the *other* calibration eyes of that size
  (leave-one-out; what a new eye with those eyes as calibration set gets). With the eyes' base
  features they are kept in the artifact for the monitor, which reweights them to a window's
  covariates to estimate coverage before outcomes arrive.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eyeops.errors import EyeopsError
from eyeops.lens.bounds import anchored_assumptions, anchored_bounds, recommend, response_bounds
from eyeops.lens.conformal import Calibration
from eyeops.lens.features import BASE_FEATURES, FEATURES, SIZE_FEATURE, features_from_base
from eyeops.lens.loss import LossEstimator, features_array
from eyeops.lens.prediction import LensPrediction
from eyeops.lens.propensity import calibrated_proba
from eyeops.lens.sizes import SIZES_MM, TARGET_VAULT_UM, nomogram_size
from eyeops.lens.unsupported import KIND as UNSUPPORTED_KIND
from eyeops.lens.unsupported import assumption as unsupported_assumption
from eyeops.lens.unsupported import eye_scales, scaled_bounds, scales_of, steps_of

FORMAT_VERSION = 1  # a DLE and calibration eyes are optional parts: older folders still load


class ModelArtifactError(EyeopsError, ValueError):
    """A model folder that is missing parts or was written by an incompatible version."""


@dataclass(frozen=True)
class LensConfig:
    delta: float = 0.125
    alpha: float = 0.10
    vault_max_um: float = 2000.0
    step_gain_um_per_mm: tuple[float, float] = (330.0, 1100.0)
    # Anchored bounds: the true vault at an unsupported size j differs from the model's f_j by no
    # more than a supported size i's residual (its 1 − bound_alpha radius) plus the error of the
    # model's gain f_j − f_i, at most `gain_margin_um_per_mm` per mm between them. inf: off.
    gain_margin_um_per_mm: float = 200.0
    bound_alpha: float = 0.05
    # Bounds from data (issue 29; eyeops.lens.unsupported): per size, the calibration eyes implanted
    # with it where the model calls it unsupported for them check the per-step gain and give a band
    # of their own (a conformal order statistic of |y − f_j| / the DLE's expected error). A size with
    # too few such eyes keeps the published per-step bounds, and one whose eyes contradict those
    # keeps monotone bounds only; each answer says which. False: the anchored rule with
    # gain_margin_um_per_mm for every size, as before.
    margin_from_data: bool = True
    margin_min_eyes: int = 30
    # Training-conditional: the order statistic is chosen so that the bound covers at least
    # 1 − bound_alpha of new eyes with this probability over the calibration draw (Vovk, ACML 2012:
    # the coverage of the r-th order statistic is Beta(r, n + 1 − r)); None: the marginal rank.
    margin_confidence: float | None = 0.9
    # Cross-fitting for those scores: the calibration split and (margin_folds − 1) more folds of
    # the training eyes, each scored by models fitted without it. 1: the calibration split alone.
    margin_folds: int = 4
    # The band is the weighted conformal quantile of those scores, each eye weighted by its odds of
    # not getting the size (eyeops.lens.unsupported): eyes (calibration or new) whose propensity of
    # it is below margin_floor take no part and get no band; margin_gamma is the marginal
    # sensitivity model's factor by which the true odds may differ from the estimated ones.
    margin_floor: float = 0.01
    margin_gamma: float = 1.5
    target_um: tuple[float, float] = TARGET_VAULT_UM
    calibration_share: float = 0.25
    seed: int = 0
    vault_params: dict[str, Any] = field(
        default_factory=lambda: {
            "objective": "regression",
            "learning_rate": 0.03,
            "num_leaves": 15,
            "min_data_in_leaf": 40,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 1.0,
            "monotone_constraints_method": "advanced",
            "verbose": -1,
        }
    )
    vault_rounds: int = 700
    # The direct loss estimator: small and strongly regularised (|residual| is a noisy target).
    dle_params: dict[str, Any] = field(
        default_factory=lambda: {
            "objective": "regression",
            "learning_rate": 0.03,
            "num_leaves": 7,
            "min_data_in_leaf": 60,
            "lambda_l2": 10.0,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "verbose": -1,
        }
    )
    dle_rounds: int = 200


def data_hash(frame: pd.DataFrame) -> str:
    """SHA-256 of the training rows in a canonical form (sorted by eye, fixed columns)."""
    canonical = frame.sort_values("eye_id")[["eye_id", *BASE_FEATURES, "implanted_size_mm", "vault_um"]]
    return hashlib.sha256(canonical.to_csv(index=False).encode()).hexdigest()


def _with_size(x: pd.DataFrame, size: float) -> pd.DataFrame:
    return x.assign(**{SIZE_FEATURE: size})


def _size_index(sizes: pd.Series | np.ndarray) -> np.ndarray:
    values = np.asarray(sizes, dtype=float)
    index = np.searchsorted(np.array(SIZES_MM), values)
    if not np.allclose(np.array(SIZES_MM)[np.clip(index, 0, len(SIZES_MM) - 1)], values):
        raise ValueError(f"sizes must be among {SIZES_MM}")
    return index


@dataclass
class CalibrationEyes:
    """The calibration eyes as the monitor needs them: base features (BASE_FEATURES order), the
    implanted size, and whether that size's interval (or bounds) covered the vault, out of sample."""

    features: np.ndarray
    implanted_size_mm: np.ndarray
    covered: np.ndarray


class LensModel:
    def __init__(
        self,
        vault: Any,
        propensity: Any,
        calibration: dict[float, Calibration],
        config: LensConfig,
        manifest: dict[str, Any],
        loss_estimator: LossEstimator | None = None,
        calibration_eyes: CalibrationEyes | None = None,
    ) -> None:
        self.vault = vault
        self.loss_estimator = loss_estimator
        self.calibration_eyes = calibration_eyes
        self.propensity_model = propensity
        # Serving predicts a few eyes at a time: OpenMP threads cost more than they save there.
        for calibrated in getattr(propensity, "calibrated_classifiers_", []):
            calibrated.estimator.set_params(n_jobs=1)
        self.calibration = calibration
        self.config = config
        self.manifest = manifest

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    # -- training ---------------------------------------------------------------------------------
    @classmethod
    def fit(cls, cohort: pd.DataFrame, config: LensConfig | None = None, version: str = "dev") -> LensModel:
        """Train on a validated cohort (factual outcomes only; counterfactual columns are ignored):
        `eyeops.lens.training.fit`."""
        from eyeops.lens.training import fit

        return fit(cohort, config, version)

    # -- prediction -------------------------------------------------------------------------------
    def predict_vault(self, x: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Predicted vault (µm) for every eye × size; non-decreasing along sizes by construction.
        One LightGBM call on a numpy block (eyes × sizes): a call per size on DataFrames cost
        several milliseconds per eye in pandas alone."""
        arr = features_array(x)
        n = len(arr)
        block = np.column_stack([np.tile(arr, (len(SIZES_MM), 1)), np.repeat(np.array(SIZES_MM), n)])
        flat = np.asarray(self.vault.predict(block, num_threads=1 if n < 256 else 0), dtype=float)
        return flat.reshape(len(SIZES_MM), n).T

    def propensities(self, x: pd.DataFrame | np.ndarray) -> np.ndarray:
        arr = features_array(x)
        proba = calibrated_proba(self.propensity_model, arr)
        full = np.zeros((len(x), len(SIZES_MM)))
        full[:, list(self.propensity_model.classes_)] = proba
        return full

    def _intervals(
        self, x: np.ndarray, steps: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Vault, propensities, support, lower and upper limits, P(in range): conformal intervals
        where a size is supported, monotone bounds (with the per-step gain where `steps` says)
        where not."""
        vault = self.predict_vault(x)
        e = self.propensities(x)
        cfg = self.config
        supported = e >= cfg.delta
        lower = np.zeros_like(vault)
        upper = np.full_like(vault, cfg.vault_max_um)
        p_in = np.full_like(vault, np.nan)
        for j, size in enumerate(SIZES_MM):
            calib = self.calibration[size]
            weights = 1.0 / np.clip(e[:, j], cfg.delta, 1.0)
            radius = calib.radius(weights, cfg.alpha)
            lower[:, j] = np.clip(vault[:, j] - radius, 0.0, cfg.vault_max_um)
            upper[:, j] = np.clip(vault[:, j] + radius, 0.0, cfg.vault_max_um)
            low, high = cfg.target_um
            p_in[:, j] = calib.mass_between(low - vault[:, j], high - vault[:, j], weights)
        lower, upper = response_bounds(
            lower, upper, supported, cfg.vault_max_um, cfg.step_gain_um_per_mm, steps
        )
        return vault, e, supported, lower, upper, p_in

    def predict(self, frame: pd.DataFrame) -> LensPrediction:
        """Everything the service answers, for every eye of `frame` (base feature columns needed)."""
        return self.predict_base(frame[list(BASE_FEATURES)].to_numpy(dtype=float))

    def predict_base(self, base: np.ndarray) -> LensPrediction:
        """`predict` for eyes × BASE_FEATURES as a float array (a server's rows, no DataFrame)."""
        x = features_from_base(base)  # eyes × FEATURES, once for every model below
        cfg = self.config
        rule = self.manifest.get("unsupported_bounds") if cfg.margin_from_data else None
        entries = rule["sizes"] if rule else None
        vault, e, supported, lower, upper, p_in = self._intervals(
            x, None if entries is None else steps_of(entries)
        )
        expected_abs = None if self.loss_estimator is None else self.loss_estimator.predict(x, vault)
        band, without_band = None, None
        if entries is not None:
            assert rule is not None
            weighted = rule.get("kind") == UNSUPPORTED_KIND
            scales = (
                eye_scales(e, entries, cfg.bound_alpha, float(rule["gamma"]), float(rule["floor"]))
                if weighted
                else scales_of(entries)
            )
            if np.isfinite(scales).any() and expected_abs is not None:
                lower, upper, band = scaled_bounds(
                    vault, expected_abs, supported, lower, upper, scales, cfg.vault_max_um
                )
            else:
                band = np.zeros(vault.shape, dtype=bool)
            by_size = [unsupported_assumption(entry, cfg.step_gain_um_per_mm) for entry in entries]
            if weighted:
                without_band = [
                    unsupported_assumption(entry, cfg.step_gain_um_per_mm, band=False) for entry in entries
                ]
            assumes = "monotone treatment response; per size, what the eyes implanted with it support"
        else:
            lower, upper, assumes, by_size = self._fixed_rule(vault, e, supported, lower, upper)
        p_in[~supported] = np.nan
        recommended = recommend(vault, p_in, supported)
        wtw, acd = (base[:, BASE_FEATURES.index(name)] for name in ("wtw_mm", "acd_mm"))
        nomogram = nomogram_size(wtw, acd)
        return LensPrediction(
            vault,
            e,
            supported,
            lower,
            upper,
            p_in,
            recommended,
            nomogram,
            assumes,
            expected_abs,
            by_size,
            band,
            without_band,
        )

    def _fixed_rule(
        self, vault: np.ndarray, e: np.ndarray, supported: np.ndarray, lower: np.ndarray, upper: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
        """Models fitted before the rule from data (and `--gain-margin`): bounds anchored on each
        supported size with a margin per mm, fixed or from the manifest's `gain_margins`."""
        cfg = self.config
        margins, why = self.margins()
        if np.isfinite(margins).any():
            wide = np.column_stack(
                [
                    self.calibration[size].radius(1.0 / np.clip(e[:, j], cfg.delta, 1.0), cfg.bound_alpha)
                    for j, size in enumerate(SIZES_MM)
                ]
            )
            lower, upper = anchored_bounds(vault, wide, supported, lower, upper, margins, cfg.vault_max_um)
        assumes, by_size = anchored_assumptions(margins, why, cfg.step_gain_um_per_mm)
        return lower, upper, assumes, by_size

    def margins(self) -> tuple[np.ndarray, list[str | None]]:
        """Per size: the tighter bound's parameter (inf: none: monotone, or per-step, bounds) and why
        there is none. The scale of the rule from data (issue 29) where the model was fitted so; else
        the anchored margin in µm per mm, from an older manifest's data or the fixed
        gain_margin_um_per_mm."""
        rule = self.manifest.get("unsupported_bounds") if self.config.margin_from_data else None
        if rule:
            return scales_of(rule["sizes"]), [entry.get("why") for entry in rule["sizes"]]
        found = self.manifest.get("gain_margins") if self.config.margin_from_data else None
        if found:
            margins = np.array(
                [np.inf if m["margin_um_per_mm"] is None else float(m["margin_um_per_mm"]) for m in found]
            )
            return margins, [m.get("why") for m in found]
        fixed = self.config.gain_margin_um_per_mm
        return np.full(len(SIZES_MM), fixed), [None] * len(SIZES_MM)

    def explain(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """Per eye: TreeSHAP of the predicted vault at every size and the size-switch contrasts
        (`eyeops.lens.explain`)."""
        from eyeops.lens.explain import explain

        return explain(self, frame)

    # -- artifact ---------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        import joblib

        folder.mkdir(parents=True, exist_ok=True)
        self.vault.save_model(str(folder / "vault.txt"))
        joblib.dump(self.propensity_model, folder / "propensity.joblib")
        arrays = {}
        for size, calib in self.calibration.items():
            for name, values in asdict(calib).items():
                arrays[f"{size:.1f}/{name}"] = values
        np.savez(folder / "calibration.npz", **arrays)
        if self.loss_estimator is not None:
            self.loss_estimator.booster.save_model(str(folder / "dle.txt"))
        if self.calibration_eyes is not None:
            np.savez(folder / "calibration_eyes.npz", **asdict(self.calibration_eyes))
        (folder / "config.json").write_text(json.dumps(asdict(self.config), indent=2))
        (folder / "manifest.json").write_text(json.dumps(self.manifest, indent=2))

    @classmethod
    def load(cls, folder: Path) -> LensModel:
        """Refuses a folder written by another format version, with what to do about it."""
        import joblib
        import lightgbm as lgb

        manifest_path = folder / "manifest.json"
        if not manifest_path.exists():
            raise ModelArtifactError(f"{folder} has no manifest.json; is it a lens model folder?")
        manifest = json.loads(manifest_path.read_text())
        found = manifest.get("format_version")
        if found != FORMAT_VERSION:
            raise ModelArtifactError(
                f"{folder} holds a lens model of format {found}; this code reads format {FORMAT_VERSION}."
                " Retrain with `eyeops lens train` (or the lens-training pipeline) or use a matching release."
            )
        if manifest.get("features") != list(FEATURES):
            raise ModelArtifactError(f"{folder} was trained on other features: {manifest.get('features')}")
        for part in ("vault.txt", "propensity.joblib", "calibration.npz", "config.json"):
            if not (folder / part).exists():
                raise ModelArtifactError(f"{folder} is missing {part}")
        config_data = json.loads((folder / "config.json").read_text())
        config_data["target_um"] = tuple(config_data["target_um"])
        if "step_gain_um_per_mm" in config_data:  # models saved before it had plain monotone bounds
            config_data["step_gain_um_per_mm"] = tuple(config_data["step_gain_um_per_mm"])
        else:
            config_data["step_gain_um_per_mm"] = (0.0, float("inf"))
        config_data.setdefault("gain_margin_um_per_mm", float("inf"))
        config_data.setdefault("margin_from_data", False)  # saved before margins came from data
        config = LensConfig(**config_data)
        with np.load(folder / "calibration.npz") as data:
            calibration = {
                size: Calibration(*(data[f"{size:.1f}/{name}"] for name in Calibration.__dataclass_fields__))
                for size in SIZES_MM
            }
        vault = lgb.Booster(model_file=str(folder / "vault.txt"))
        # Optional parts (models saved before them answer without expected errors; the monitor then
        # falls back to the interval rule and sets no expected coverage).
        dle = folder / "dle.txt"
        loss_estimator = LossEstimator(lgb.Booster(model_file=str(dle))) if dle.exists() else None
        eyes = None
        if (folder / "calibration_eyes.npz").exists():
            with np.load(folder / "calibration_eyes.npz") as data:
                eyes = CalibrationEyes(
                    *(np.asarray(data[name]) for name in CalibrationEyes.__dataclass_fields__)
                )
        return cls(
            vault,
            joblib.load(folder / "propensity.joblib"),
            calibration,
            config,
            manifest,
            loss_estimator,
            eyes,
        )
