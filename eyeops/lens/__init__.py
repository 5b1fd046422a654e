"""Lens sizing: cohorts, the vault model over the four ICL sizes, support, intervals and bounds."""
