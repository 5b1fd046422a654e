"""Main-environment side of monitoring: the reference data the drift detectors are fitted on, and
`eyeops monitor report` (the monitoring service itself runs in detectors/)."""
