"""tritonclient's gRPC client against a Triton, in a process of its own.

tritonclient's generated protos and KServe's both define the `inference` protobuf package, and
protobuf refuses the second into one descriptor pool ("Couldn't build proto file"), so a pytest
process that has imported KServe cannot import `tritonclient.grpc`. A gRPC user of Triton is
another process anyway.

    python -m tests.integration.triton_grpc_client HOST:GRPC_PORT INPUTS.npz

INPUTS.npz holds `crops`, `grammars`, `regions`, `allowed` (tests/integration/
test_triton_repository.py writes it); the key comes from EYEOPS_TEST_TRITON_KEY. Prints one JSON
object: readiness, both models' texts with the key, and whether each keyless call was refused.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from eyeops.auth import TRITON_GRPC_KEY_HEADER


def _inputs(model: str, data: np.lib.npyio.NpzFile) -> list[grpcclient.InferInput]:
    names, pixels, rows = (
        (("CROPS", "GRAMMAR"), data["crops"], data["grammars"])
        if model == "trocr"
        else (("REGION", "ALLOWED"), data["regions"], data["allowed"])
    )
    first = grpcclient.InferInput(names[0], list(pixels.shape), "UINT8")
    first.set_data_from_numpy(pixels)
    second = grpcclient.InferInput(names[1], [len(rows), 1], "BYTES")
    second.set_data_from_numpy(np.array([[str(r).encode()] for r in rows], dtype=np.object_))
    return [first, second]


def main(argv: list[str]) -> int:
    address, inputs = argv
    key = os.environ["EYEOPS_TEST_TRITON_KEY"]
    client = grpcclient.InferenceServerClient(address)
    data = np.load(inputs)
    out: dict[str, object] = {
        "server_ready": client.is_server_ready(),
        "models_ready": {m: client.is_model_ready(m) for m in ("trocr", "ppocr")},
        "texts": {},
        "refused": {},
    }
    for model in ("trocr", "ppocr"):
        result = client.infer(model, _inputs(model, data), headers={TRITON_GRPC_KEY_HEADER: key})
        out["texts"][model] = [t.decode() for t in result.as_numpy("TEXT").reshape(-1)]  # type: ignore[index]
    for label, headers in (("no key", {}), ("wrong key", {TRITON_GRPC_KEY_HEADER: "wrong"})):
        try:
            client.infer("ppocr", _inputs("ppocr", data), headers=headers)
            out["refused"][label] = False  # type: ignore[index]
        except InferenceServerException:
            out["refused"][label] = True  # type: ignore[index]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
