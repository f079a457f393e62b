"""The studio's web app (Starlette): the page, its static files, and the JSON API it calls.

Routes (the page's side is studio/static/main.js and the modules it imports):

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

import asyncio
import json
import logging
import threading
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from augkit.documents import DocumentError, DocumentSyntaxError, parse_document, short_repr
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
                return _json(await in_thread(answer, body))
            except asyncio.CancelledError:  # Ctrl-C while a sheet is drawn: the server is stopping
                return _errors(503, "augkit studio is stopping")
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
        return _json(await in_thread(studio.steps))

    async def step(request: Request) -> Response:
        try:
            return _json(await in_thread(step_controls, request.path_params["name"]))
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
    return Starlette(routes=routes, middleware=middleware, exception_handlers={404: _not_routed, 405: _not_routed})


def allowed_hosts(host: str) -> list[str]:
    """The Host header names to answer to when bound to ``host``: loopback's names, the host
    itself, or any name when bound to every address (the user chose to serve the network)."""
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    return sorted({"127.0.0.1", "localhost", "::1", "[::1]", host})


# ----------------------------------------------------------------------------- plumbing


async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` in a daemon thread of its own, awaited.

    A sheet takes tens of milliseconds of CPU (seconds for a heavy pipeline): off the event loop,
    the page's other requests are answered meanwhile. A daemon thread, not the thread pool's, so
    that Ctrl-C never waits for a sheet being drawn: the process ends and the draw with it (the
    studio writes nothing that could be left half done).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # cancelled meanwhile: nobody waits for it
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (function(*args), None)
        except BaseException as error:  # noqa: BLE001 (handed to the awaiting request)
            outcome = (None, error)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop has closed: the server stopped while this ran
            pass

    threading.Thread(target=run, name="augkit studio", daemon=True).start()
    return await future


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
    try:  # augkit's bounded reader: json.loads alone overflows its recursion on 1,000 nested brackets
        return parse_document(raw, source="the body", what="request", format="json", max_bytes=MAX_BODY)
    except DocumentSyntaxError as error:
        raise _Refused(400, f"the body is not JSON: {error.reason}") from None
    except DocumentError as error:  # too deep, a number too long, not UTF-8
        raise _Refused(400, str(error)) from None


class _AsciiJSON(JSONResponse):
    """JSON with every non-ASCII character escaped: a file name that is not UTF-8 (Python keeps its
    bytes as lone surrogates) becomes ``\\udcXX``, which JSON allows and UTF-8 cannot encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def _json(data: Any, status: int = 200) -> Response:
    return _AsciiJSON(data, status_code=status, headers=_NO_STORE)


async def _not_routed(request: Request, error: HTTPException) -> Response:
    """404 and 405 as the API's JSON under /api (every /api answer is JSON), as text elsewhere."""
    if request.url.path.startswith("/api/"):
        answer = _errors(error.status_code, f"{request.method} {short_repr(request.url.path)}: {error.detail}")
        answer.headers.update(error.headers or {})  # a 405's Allow
        return answer
    return PlainTextResponse(error.detail, status_code=error.status_code, headers=error.headers)


def _errors(status: int, message: str) -> Response:
    return _json({"ok": False, "errors": [{"step": None, "key": None, "message": message}]}, status)
