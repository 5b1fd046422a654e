"""TrOCR-architecture text recognition for field crops: vocabulary, model, decoding, training."""
