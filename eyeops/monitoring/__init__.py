"""Main-environment side of monitoring: the reference data the drift detectors are fitted on."""
