"""Synthetic exams: realistic values, rendered device screens, degradations. Deterministic by seed."""
