"""The HTTP server napari's and 3D Slicer's nnInteractive plugins talk to (``imis-lite serve``).

It speaks the remote protocol of ``nninteractive-client`` 2.6 (``nnInteractive/inference/remote``): JSON
bodies, NNIA array bodies with their metadata in ``X-Meta``, a lease token in ``X-Lease-Token``, and an
optional ``Authorization: Bearer`` key, compared in constant time. An interaction's reply carries only the
sub-volume it changed. Every malformed request gets a 4xx with a one-line ``detail``; nothing a client sends
reaches a traceback. One model serves every lease, one request at a time (a CPU has nothing to overlap).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .._version import __version__
from ..predictor import Segmenter
from . import nnia
from .leases import CapacityError, LeaseError, Leases
from .session import Change, InteractiveVolume, ProtocolError

log = logging.getLogger("imis_lite.server")

META_HEADER = "X-Meta"
LEASE_HEADER = "X-Lease-Token"
OCTET_STREAM = "application/octet-stream"
#: what the client's capability check reads; we take 2D boxes and points, nothing else
CAPABILITIES = {
    "supported_interactions": {"points": True, "bbox2d": True, "bbox3d": False, "scribble": False, "lasso": False,
                               "initial_seg": False},
    "channel_mapping": {"prev_seg": 0, "bbox2d": [1, 2], "points": [3, 4]},
    "num_interaction_channels": 5,
    "supports_initial_label": False,
    "supports_zero_shot_label_refinement": False,
    "preferred_scribble_thickness": [1, 1, 1],
    "interaction_decay": None,
    "patch_size": None,
    "do_autozoom": False,
    "inference_session_version": "2.6.0",
    "supports_undo": True,
}


@dataclass(frozen=True)
class ServerLimits:
    max_body_bytes: int = 1 << 30
    max_image_voxels: int = 512 * 512 * 1024
    max_sessions: int = 4
    idle_timeout_s: float = 600.0
    liveness_timeout_s: float = 60.0


class Refused(Exception):
    """A request answered with ``status`` and a one-line reason."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def create_app(segmenter: Segmenter, api_key: str | None = None, limits: ServerLimits = ServerLimits()) -> FastAPI:
    """The app serving ``segmenter`` to at most ``limits.max_sessions`` leases."""
    model_lock = threading.Lock()
    leases: Leases[InteractiveVolume] = Leases(
        lambda: InteractiveVolume(segmenter, model_lock, limits.max_image_voxels),
        limits.max_sessions, limits.idle_timeout_s, limits.liveness_timeout_s)
    capabilities = {**CAPABILITIES, "license": f"imis-lite {__version__}, model {segmenter.bundle.name} "
                    f"({segmenter.bundle.manifest.get('license', 'see its model card')})"}
    app = FastAPI(title="imis-lite", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(Refused)
    async def refused(_: Request, error: Refused) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status)

    @app.exception_handler(Exception)
    async def failed(_: Request, error: Exception) -> JSONResponse:
        log.exception("request failed")  # the trace stays in the server's log, the client gets one line
        return JSONResponse({"detail": f"internal error ({type(error).__name__})"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": "malformed request"}, status_code=400)

    def authorise(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        expected = f"Bearer {api_key}"
        if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
            raise Refused(401, "missing or wrong API key")

    async def body_of(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limits.max_body_bytes):
            raise Refused(413, f"body larger than the limit of {limits.max_body_bytes} bytes")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limits.max_body_bytes:
                raise Refused(413, f"body larger than the limit of {limits.max_body_bytes} bytes")
        return bytes(body)

    async def json_of(request: Request) -> dict[str, Any]:
        body = await body_of(request)
        try:
            payload = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise Refused(400, "body is not JSON") from None
        if not isinstance(payload, dict):
            raise Refused(400, "body must be a JSON object")
        return payload

    def meta_of(request: Request) -> dict[str, Any]:
        try:
            meta = json.loads(request.headers.get(META_HEADER) or "{}")
        except ValueError:
            raise Refused(400, f"{META_HEADER} is not JSON") from None
        if not isinstance(meta, dict):
            raise Refused(400, f"{META_HEADER} must be a JSON object")
        return meta

    def lease_of(request: Request, active: bool = True):
        try:
            return leases.get(request.headers.get(LEASE_HEADER), active)
        except LeaseError as error:
            raise Refused(410, str(error)) from None

    async def under_lease(request: Request, work, *args):
        """``work(state, *args)`` under the lease's lock, off the event loop; protocol errors become 400."""
        lease = lease_of(request)

        def run():
            with lease.lock:
                try:
                    return work(lease.state, *args)
                except (ProtocolError, nnia.ArrayFormatError) as error:
                    raise Refused(400, str(error).splitlines()[0]) from None

        return await run_in_threadpool(run)

    def change_reply(change: Change | None) -> Response:
        ran = change is not None
        if change is None or change.bbox is None or change.after is None:
            meta: dict[str, Any] = {"ran_prediction": ran, "bbox": None}
            return Response(b"", media_type=OCTET_STREAM, headers={META_HEADER: json.dumps(meta)})
        meta = {"ran_prediction": True, "bbox": change.bbox, "dtype": str(change.after.dtype),
                "shape": list(change.after.shape)}
        return Response(nnia.pack(change.after), media_type=OCTET_STREAM, headers={META_HEADER: json.dumps(meta)})

    def flag(payload: dict[str, Any], name: str) -> bool:
        value = payload.get(name)
        if not isinstance(value, bool):
            raise Refused(400, f"'{name}' must be true or false")
        return value

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"ok": True}

    @app.get("/capabilities")
    async def get_capabilities(request: Request) -> dict:
        authorise(request)
        return capabilities

    @app.post("/claim")
    async def claim(request: Request) -> dict:
        authorise(request)
        try:
            token = leases.claim()
        except CapacityError as error:
            raise Refused(503, str(error)) from None
        return {"lease_token": token, "idle_timeout_seconds": leases.idle_s,
                "liveness_timeout_seconds": leases.liveness_s, "max_sessions": leases.max_sessions}

    @app.post("/release")
    async def release(request: Request) -> dict:
        authorise(request)
        leases.release(request.headers.get(LEASE_HEADER))
        return {"released": True}

    @app.post("/heartbeat")
    async def heartbeat(request: Request) -> dict:
        authorise(request)
        return {"remaining_seconds": leases.remaining_s(lease_of(request, active=False))}

    @app.get("/lease_status")
    async def lease_status(request: Request) -> dict:
        authorise(request)
        return {"remaining_seconds": leases.remaining_s(lease_of(request, active=False)), "idle_timeout_seconds": leases.idle_s}

    @app.post("/set_image")
    async def set_image(request: Request) -> dict:
        authorise(request)
        meta_of(request)
        body = await body_of(request)

        def work(state: InteractiveVolume) -> dict:
            image = nnia.unpack(body, limits.max_image_voxels * 8)  # one channel of float64 at most
            return {"original_image_shape": list(state.set_image(image))}

        return await under_lease(request, work)

    @app.post("/set_target_buffer")
    async def set_target_buffer(request: Request) -> dict:
        authorise(request)
        payload = await json_of(request)
        await under_lease(request, lambda state: state.set_target(payload.get("shape"), payload.get("dtype")))
        return {}

    @app.post("/set_do_autozoom")
    async def set_do_autozoom(request: Request) -> dict:
        authorise(request)
        flag(await json_of(request), "do_autozoom")  # accepted; the whole volume is always in view
        lease_of(request)
        return {}

    @app.post("/reset_interactions")
    async def reset_interactions(request: Request) -> dict:
        authorise(request)
        await json_of(request)
        await under_lease(request, lambda state: state.reset())
        return {}

    @app.post("/undo")
    async def undo(request: Request) -> Response:
        authorise(request)
        await json_of(request)
        return change_reply(await under_lease(request, lambda state: state.undo()))

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        authorise(request)
        await json_of(request)
        lease_of(request)
        return change_reply(None)  # every interaction predicts when it arrives: nothing is ever queued

    async def interaction(request: Request, where: str, act) -> Response:
        """An add_*_interaction request: ``act(state, payload[where], include_interaction)``, its change as reply."""
        authorise(request)
        payload = await json_of(request)
        positive = flag(payload, "include_interaction")
        return change_reply(await under_lease(request, lambda state: act(state, payload.get(where), positive)))

    @app.post("/add_bbox_interaction")
    async def add_bbox(request: Request) -> Response:
        return await interaction(request, "bbox_coords", InteractiveVolume.add_box)

    @app.post("/add_point_interaction")
    async def add_point(request: Request) -> Response:
        return await interaction(request, "coordinates", InteractiveVolume.add_point)

    for path in ("/add_scribble_interaction", "/add_lasso_interaction", "/add_initial_seg_interaction"):
        @app.post(path)
        async def unsupported(request: Request) -> Response:
            authorise(request)
            raise Refused(400, f"{request.url.path[1:]} is not supported by imis-lite (see /capabilities)")

    return app
