"""What the monitor reads out of KServe logger payloads (v1 and v2), as plain rows.

- lens predictor request: one feature row per eye (its base features, in the reference's order)
- lens predictor/transformer response: per eye the predicted vault per size, interval or bounds,
  the recommended size, (transformer) the eye id, and where the model has a direct loss estimator
  the expected absolute error per supported size
- OCR transformer response: the exam with its fields (value, confidence, status)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eyeops_detectors.detectors import SIZES_MM, AnyArray

MAX_ROWS = 256  # eyes per lens event, exams per OCR event (the servers refuse more themselves)


class PayloadError(ValueError):
    """A payload the monitor cannot read; the message says what was expected."""


class PayloadTooLarge(PayloadError):
    """More rows in one event than any server of ours answers. HTTP 413."""


def _capped(n: int) -> None:
    if n > MAX_ROWS:
        raise PayloadTooLarge(f"{n} rows in one event; at most {MAX_ROWS}")


@dataclass(frozen=True)
class LensAnswer:
    vault_um: list[float]  # per size, SIZES_MM order
    lower_um: list[float]
    upper_um: list[float]
    recommended_size_mm: float
    eye_id: str | None = None
    p_in_range: tuple[float | None, ...] = ()  # per size where the answer carries it (supported sizes)
    # per size, E|vault − vault_um| from the model's direct loss estimator (absent: older models)
    expected_abs_error_um: tuple[float | None, ...] = ()
    # per size, whether the data support it (a conformal interval) or not (bounds); None: not said
    supported: tuple[bool | None, ...] = ()


def as_json(data: Any) -> Any:
    if isinstance(data, bytes | bytearray | str):
        try:
            return json.loads(data)
        except ValueError as exc:
            raise PayloadError(f"payload is not JSON: {exc}") from exc
        except RecursionError:  # nested deeper than the parser recurses: no logged payload is
            raise PayloadError("payload is nested too deeply to be a logged KServe payload") from None
    return data


def _v2_inputs(body: dict[str, Any], key: str) -> dict[str, AnyArray]:
    out = {}
    for tensor in body.get(key) or []:
        if not isinstance(tensor, dict) or "name" not in tensor or "data" not in tensor:
            raise PayloadError(f"v2 {key} entries need name, shape, datatype and data")
        data, name = tensor["data"], str(tensor["name"])[:64]
        try:
            if tensor.get("datatype") == "BYTES":
                out[name] = np.asarray(data, dtype=object).reshape(-1)
            else:
                out[name] = np.asarray(data, dtype=np.float64).reshape(tensor.get("shape") or [-1])
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"v2 {key}: an entry's data does not fit its datatype and shape") from exc
        _capped(len(out[name]))
    return out


def lens_eye_ids(body: Any) -> list[str | None]:
    """The eye id of each instance of a lens predictor request, where the transformer put one."""
    body = as_json(body)
    instances = body.get("instances") if isinstance(body, dict) else None
    if isinstance(instances, list):
        return [
            i.get("eye_id")
            if isinstance(i, dict) and isinstance(i.get("eye_id"), str) and len(i["eye_id"]) <= 64
            else None
            for i in instances
        ]
    inputs = _v2_inputs(body, "inputs") if isinstance(body, dict) and "inputs" in body else {}
    if "eye_id" in inputs:
        return [str(e)[:64] for e in inputs["eye_id"].reshape(-1)]
    return []


def lens_features(body: Any, feature_names: Sequence[str]) -> AnyArray:
    """(n, k) feature rows from a lens predictor request."""
    body = as_json(body)
    if not isinstance(body, dict):
        raise PayloadError("lens request must be a JSON object")
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise PayloadError("v1 lens request: instances must be a list of objects")
        _capped(len(rows))
        try:
            out = np.array([[float(r[name]) for name in feature_names] for r in rows], dtype=np.float64)
        except KeyError as exc:
            raise PayloadError(f"v1 lens request lacks feature {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise PayloadError("v1 lens request: a feature is not a number") from exc
        return out.reshape(len(rows), len(feature_names))
    if "inputs" in body:
        inputs = _v2_inputs(body, "inputs")
        missing = [n for n in feature_names if n not in inputs]
        if missing:
            raise PayloadError(f"v2 lens request lacks inputs {', '.join(missing)}")
        columns = [inputs[n].reshape(-1) for n in feature_names]
        if len({len(c) for c in columns}) != 1:
            raise PayloadError("v2 lens request: inputs of different lengths")
        try:
            return np.column_stack(columns).astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise PayloadError("v2 lens request: a feature is not a number") from exc
    raise PayloadError("lens request has neither instances (v1) nor inputs (v2)")


def _eye_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise PayloadError("eye_id must be a string of 1-64 characters")
    return value


def _probability(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError("p_in_range outside 0..1")
    return number


def _flag(value: Any) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise TypeError("supported must be true or false")
    return value


def _abs_error(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not 0.0 <= number < 1e5:  # NaN fails too
        raise ValueError("expected_abs_error_um outside 0..1e5")
    return number


def _answer(p: dict[str, Any]) -> LensAnswer:
    try:
        by_size = {round(float(s["size_mm"]), 1): s for s in p["sizes"]}
        sizes = [by_size[size] for size in SIZES_MM]
        return LensAnswer(
            [float(s["vault_um"]) for s in sizes],
            [float(s["lower_um"]) for s in sizes],
            [float(s["upper_um"]) for s in sizes],
            float(p["recommended_size_mm"]),
            _eye_id(p.get("eye_id")),
            tuple(_probability(s.get("p_in_range")) for s in sizes),
            tuple(_abs_error(s.get("expected_abs_error_um")) for s in sizes),
            tuple(_flag(s.get("supported")) for s in sizes),
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise PayloadError(
            f"lens prediction lacks or garbles a value ({type(exc).__name__}); expected sizes[4] and"
            " recommended_size_mm"
        ) from exc


def lens_answers(body: Any) -> list[LensAnswer]:
    """Per eye answers from a lens predictor or transformer response (v1 or v2)."""
    body = as_json(body)
    if not isinstance(body, dict):
        raise PayloadError("lens response must be a JSON object")
    if "predictions" in body:
        predictions = body["predictions"]
        if not isinstance(predictions, list):
            raise PayloadError("v1 lens response: predictions must be a list")
        _capped(len(predictions))
        return [_answer(p) for p in predictions]
    if "outputs" in body:
        outputs = _v2_inputs(body, "outputs")
        if "prediction" in outputs:
            return [_answer(as_json(p)) for p in outputs["prediction"]]
        needed = ("vault_um", "lower_um", "upper_um", "recommended_size_mm")
        if any(n not in outputs for n in needed):
            raise PayloadError(f"v2 lens response needs outputs {', '.join(needed)}")
        try:
            vault, low, high = (outputs[n].reshape(-1, 4) for n in needed[:3])
        except ValueError as exc:
            raise PayloadError(
                "v2 lens response: vault_um, lower_um, upper_um need 4 values per eye"
            ) from exc
        rec = outputs["recommended_size_mm"].reshape(-1)
        if not len(vault) == len(low) == len(high) == len(rec):
            raise PayloadError("v2 lens response: outputs of different lengths")
        supported = outputs["supported"].reshape(-1, 4) if "supported" in outputs else None
        if supported is not None and len(supported) != len(rec):
            raise PayloadError("v2 lens response: outputs of different lengths")
        return [
            LensAnswer(
                list(vault[i]), list(low[i]), list(high[i]), float(rec[i]),
                supported=() if supported is None else tuple(bool(f) for f in supported[i]),
            )
            for i in range(len(rec))
        ]  # fmt: skip
    raise PayloadError("lens response has neither predictions (v1) nor outputs (v2)")


def ocr_exams(body: Any) -> list[dict[str, Any]]:
    """Exams from an OCR transformer response: v1 {"predictions": [exam]} or v2 output "exam"."""
    body = as_json(body)
    if not isinstance(body, dict):
        raise PayloadError("OCR response must be a JSON object")
    if "predictions" in body:
        exams = body["predictions"]
    elif "outputs" in body:
        exams = [as_json(e) for e in _v2_inputs(body, "outputs").get("exam", [])]
    else:
        raise PayloadError("OCR response has neither predictions (v1) nor outputs (v2)")
    if not isinstance(exams, list) or not exams:
        raise PayloadError("OCR response holds no exam")
    _capped(len(exams))
    for exam in exams:
        if (
            not isinstance(exam, dict)
            or not isinstance(exam.get("device_kind"), str)
            or not isinstance(exam.get("fields"), list)
            or len(exam["fields"]) > MAX_ROWS
        ):
            raise PayloadError("an OCR exam needs device_kind and fields")
    return exams
