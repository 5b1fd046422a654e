"""Triton Python-backend model: field crops in, text and per-token confidences out.

Every request of a dynamic batch is decoded in one batched forward pass. The recognition code is
eyeops.ocr (shared with training); where eyeops is not in the interpreter's site-packages (the
local stack), EYEOPS_SITE_PACKAGES names the folders to put first on sys.path, as the stub
ignores PYTHONPATH. That environment keeps numpy<2 (see requirements.txt).
"""

import json
import os
import sys
from pathlib import Path

sys.path[0:0] = [p for p in os.environ.get("EYEOPS_SITE_PACKAGES", "").split(os.pathsep) if p]

import numpy as np  # noqa: E402
import torch  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from eyeops.ocr.decode import recognize  # noqa: E402
from eyeops.ocr.model import MAX_TOKENS, load_recognizer  # noqa: E402
from eyeops.ocr.triton_batch import (  # noqa: E402
    CROPS,
    GRAMMAR,
    TEXT,
    TOKEN_CONFIDENCE,
    gather,
    parameter,
    respond,
    token_confidence_rows,
)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        default = Path(args["model_repository"]) / args["model_version"] / "checkpoint"
        checkpoint = os.environ.get("EYEOPS_OCR_CHECKPOINT") or parameter(config, "CHECKPOINT_DIR")
        threads = int(os.environ.get("EYEOPS_TORCH_THREADS") or parameter(config, "TORCH_THREADS") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        self.recognizer = load_recognizer(Path(checkpoint) if checkpoint else default)
        self.width = MAX_TOKENS + 1

    def execute(self, requests):
        batch = gather(requests, pb_utils, CROPS, GRAMMAR)
        results = recognize(self.recognizer, batch.pixels, batch.rows) if batch.pixels is not None else []
        return respond(batch, results, pb_utils, self._tensors)

    def _tensors(self, chunk):
        text = np.array([[r.text.encode("utf-8")] for r in chunk], dtype=np.object_)
        conf = token_confidence_rows([r.token_confidences for r in chunk], self.width)
        return [pb_utils.Tensor(TEXT, text), pb_utils.Tensor(TOKEN_CONFIDENCE, conf)]
