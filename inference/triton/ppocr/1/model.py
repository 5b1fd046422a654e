"""Triton Python-backend model: prepared field regions in, the PP-OCR recogniser's text and
confidence out.

Every request of a dynamic batch is read in one onnxruntime call through eyeops.ocr.peers (shared
with the offline evaluation). As for trocr, EYEOPS_SITE_PACKAGES names the folders to put first on
sys.path (the stub ignores PYTHONPATH). A model file that is missing or not a PP-OCR recogniser
fails initialize with the reason, so Triton never serves a half-loaded model.
"""

import json
import os
import sys
from pathlib import Path

sys.path[0:0] = [p for p in os.environ.get("EYEOPS_SITE_PACKAGES", "").split(os.pathsep) if p]

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from eyeops.ocr.peers import CtcRecognizer  # noqa: E402
from eyeops.ocr.triton_batch import gather, parameter, respond  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        model_file = os.environ.get("EYEOPS_PPOCR_MODEL") or parameter(config, "MODEL_FILE")
        if not model_file and (version_dir / "model.onnx").is_file():
            model_file = str(version_dir / "model.onnx")
        dictionary = parameter(config, "DICTIONARY")
        if not dictionary and (version_dir / "dictionary.txt").is_file():
            dictionary = str(version_dir / "dictionary.txt")
        threads = int(os.environ.get("EYEOPS_PPOCR_THREADS") or parameter(config, "THREADS") or 0)
        self.recognizer = CtcRecognizer.load(
            Path(model_file) if model_file else None,
            Path(dictionary) if dictionary else None,
            threads=threads,
        )

    def execute(self, requests):
        batch = gather(requests, pb_utils, "REGION", "ALLOWED")
        readings = self.recognizer.read_batch(batch.pixels, batch.rows) if batch.pixels is not None else []
        return respond(batch, readings, pb_utils, _tensors)


def _tensors(chunk):
    text = np.array([[r.text.encode("utf-8")] for r in chunk], dtype=np.object_)
    conf = np.array([[r.confidence] for r in chunk], dtype=np.float32)
    return [pb_utils.Tensor("TEXT", text), pb_utils.Tensor("CONFIDENCE", conf)]
