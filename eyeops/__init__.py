"""eyeops: exam-device OCR, lens sizing and monitoring for an eye clinic."""

__version__ = "0.1.0"
