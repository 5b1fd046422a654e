"""Drift detection for eyeops. Runs in its own environment: alibi-detect 0.13 pins numpy<2.

alibi-detect is licensed under the Business Source License 1.1 since 0.11.5; production use needs a
commercial licence. The engine sits behind FeatureDriftDetector so another one can replace it.
"""
