"""Client of the OCR endpoint (v1 JSON or v2; the bodies are eyeops.ocr.wire's), used by the demo,
the evaluation and gateways."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from eyeops.ocr.wire import MODEL, exam_of_answer, v1_request, v2_request


@dataclass(frozen=True)
class OcrReply:
    status_code: int
    body: dict[str, Any]
    retry_after: str | None = None

    @property
    def exam(self) -> dict[str, Any]:
        """The exam result of a 200 reply (v1 or v2 shape)."""
        return exam_of_answer(self.body)


class OcrClient:
    """Async client; pass a transport in tests, a base URL in production."""

    def __init__(
        self,
        base_url: str,
        model: str = MODEL,
        protocol: str = "v1",
        timeout_s: float = 60.0,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.model = model
        self.protocol = protocol
        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=timeout_s, headers=headers, transport=transport
        )

    async def read_exam(
        self,
        image: bytes,
        device_kind: str,
        device_id: str | None = None,
        request_id: str | None = None,
        patient_id: str | None = None,
        laterality: str | None = None,
        exam_date: str | None = None,
    ) -> OcrReply:
        """Send one exam. Transport failures raise httpx.TransportError; every answer is a reply."""
        headers = {"ce-id": request_id} if request_id else {}
        if device_id:
            headers["x-eyeops-device-id"] = device_id  # for the service's log when a token is refused
        hints = {
            "device_id": device_id,
            "patient_id": patient_id,
            "laterality": laterality,
            "exam_date": exam_date,
        }
        if self.protocol == "v1":
            response = await self._client.post(
                f"/v1/models/{self.model}:predict",
                json=v1_request(image, device_kind, hints),
                headers=headers,
            )
        else:
            response = await self._client.post(
                f"/v2/models/{self.model}/infer", json=v2_request(image, device_kind, hints), headers=headers
            )
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": response.text}
        return OcrReply(response.status_code, payload, response.headers.get("retry-after"))

    async def aclose(self) -> None:
        await self._client.aclose()
