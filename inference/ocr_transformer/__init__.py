"""The OCR transformer: a kserve.Model in front of the Triton TrOCR predictor."""
