"""One rooted error hierarchy. Each class names the HTTP status the service edge maps it to."""

from __future__ import annotations


class EyeopsError(Exception):
    """Base of every error eyeops raises on purpose. Maps to HTTP 500."""

    status_code = 500

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class InvalidImage(EyeopsError):
    """Not an image, truncated, or a format we do not accept. HTTP 400."""

    status_code = 400


class InvalidRequest(EyeopsError):
    """A request that is malformed apart from its image (missing fields, wrong types). HTTP 400."""

    status_code = 400


class UnknownDeviceKind(EyeopsError):
    """A device kind no layout file describes. HTTP 400."""

    status_code = 400


class PayloadTooLarge(EyeopsError):
    """Image over the byte limit, or a decompression bomb. HTTP 413."""

    status_code = 413


class AlignmentFailed(EyeopsError):
    """The image could not be aligned to its device template. HTTP 422."""

    status_code = 422


class PredictorUnavailable(EyeopsError):
    """The OCR predictor (Triton) cannot be reached or is not ready. HTTP 503 with Retry-After."""

    status_code = 503


class DatabaseUnavailable(EyeopsError):
    """The results database cannot be reached; nothing was written. HTTP 503 with Retry-After."""

    status_code = 503


class LayoutError(EyeopsError):
    """A device layout file is inconsistent. Raised at load time, never per request."""


class CheckpointError(EyeopsError):
    """A model checkpoint directory is missing files or is not a TrOCR model."""
