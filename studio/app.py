"""The studio's web app (Starlette): the page, its static files, and the JSON API it calls.

Routes (the page's side is studio/static/studio.js):

    GET  /                  the page
    GET  /static/<file>     its script and style sheet (from this package: no CDN, no internet)
    GET  /api/state         the inputs, the start pipeline and sheet options
    GET  /api/steps         every step name with its summary
    GET  /api/steps/<name>  one step's parameters with the control for each (``studio.controls``)
    POST /api/sheet         the contact sheet for a pipeline (``augkit preview``'s bytes)
    POST /api/export        the pipeline as YAML and inline
    POST /api/import        a spec's text read into steps

Answers are JSON; a problem with what was sent is 400 (malformed) or 422 (a pipeline that does not
build or run, every problem placed at its step and parameter), never a traceback. Requests whose
Host header is not the address the studio serves are refused (a page elsewhere cannot reach it by
DNS rebinding), and POSTs must be JSON (a form on another site cannot post one without CORS).
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from augkit.errors import AugkitError, SpecError
from augkit.studio.controls import step_controls
from augkit.studio.session import BadRequest, Invalid, Studio

STATIC = Path(__file__).parent / "static"
MAX_BODY = 4 * 1024 * 1024  # bytes: a pipeline, or a spec file being imported (the document limit is 1 MiB)
log = logging.getLogger("augkit.studio")


def create_app(studio: Studio, hosts: Sequence[str]) -> Starlette:
    """The ASGI app serving ``studio``; ``hosts``: the Host header names it answers to."""

    def handler(answer: Callable[[Any], dict[str, Any]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                body = await _json_body(request)
                # A sheet takes tens of milliseconds of CPU: off the event loop, so the page's
                # other requests (and Ctrl-C) are answered meanwhile.
                return _json(await run_in_threadpool(answer, body))
            except _Refused as refused:
                return _errors(refused.status, str(refused))
            except Invalid as invalid:
                return _json({"ok": False, "errors": [p.to_dict() for p in invalid.problems]}, 422)
            except BadRequest as error:
                return _errors(400, str(error))
            except AugkitError as error:
                return _errors(422, str(error))
            except Exception as error:  # noqa: BLE001 (the page gets one line; the terminal the traceback)
                log.error("augkit studio: %s", "".join(traceback.format_exception(error)))
                return _errors(500, f"internal error: {type(error).__name__}: {error}; see the terminal")

        return endpoint

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=_NO_STORE)

    async def state(request: Request) -> Response:
        return _json(studio.state())

    async def steps(request: Request) -> Response:
        return _json(await run_in_threadpool(studio.steps))

    async def step(request: Request) -> Response:
        try:
            return _json(await run_in_threadpool(step_controls, request.path_params["name"]))
        except SpecError as error:
            return _errors(404, str(error))

    routes = [
        Route("/", page),
        Route("/api/state", state),
        Route("/api/steps", steps),
        Route("/api/steps/{name}", step),
        Route("/api/sheet", handler(studio.sheet), methods=["POST"]),
        Route("/api/export", handler(studio.export), methods=["POST"]),
        Route("/api/import", handler(studio.import_spec), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC, follow_symlink=False), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))]
    return Starlette(routes=routes, middleware=middleware)


def allowed_hosts(host: str) -> list[str]:
    """The Host header names to answer to when bound to ``host``: loopback's names, the host
    itself, or any name when bound to every address (the user chose to serve the network)."""
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    return sorted({"127.0.0.1", "localhost", "::1", "[::1]", host})


# ----------------------------------------------------------------------------- plumbing

_NO_STORE = {"Cache-Control": "no-store"}  # a reload after an upgrade gets the new page


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


async def _json_body(request: Request) -> Any:
    """The request's JSON body (None for GET); refused when it is not JSON or too large."""
    if request.method != "POST":
        return None
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise _Refused(415, "send the body as JSON (Content-Type: application/json)")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise _Refused(413, f"the request is larger than {MAX_BODY // 2**20} MiB")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise _Refused(413, f"the request is larger than {MAX_BODY // 2**20} MiB")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise _Refused(400, f"the body is not JSON: {error}") from None


def _json(data: Any, status: int = 200) -> Response:
    return JSONResponse(data, status_code=status, headers=_NO_STORE)


def _errors(status: int, message: str) -> Response:
    return _json({"ok": False, "errors": [{"step": None, "key": None, "message": message}]}, status)
