"""Compile, run locally and submit the Kubeflow pipelines in kfp_pipelines/."""
