"""The lens transformer: eye_id → Feast online features → the lens predictor."""
