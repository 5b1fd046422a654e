"""The lens predictor: a kserve.Model around eyeops.lens.model."""
