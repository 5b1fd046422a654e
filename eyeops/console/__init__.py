"""The review console (web): clinic staff correct what the OCR sent to review."""
