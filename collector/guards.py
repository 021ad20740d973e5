"""ASGI guards in front of the app: the request size limit and the origin check.

Pure ASGI rather than FastAPI dependencies: the size limit must act while the body is
read (a chunked body has no Content-Length to check first), before anything parses it."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector.sessions import Problem


def refused(status: int, problems: list[Problem]) -> JSONResponse:
    """The one shape of every refusal: which field (or part of the request) and why."""
    return JSONResponse(
        {"detail": [{"field": p.field, "problem": p.problem} for p in problems]},
        status_code=status,
    )


def refusal(status: int, field: str, problem: str) -> JSONResponse:
    return refused(status, [Problem(field, problem)])


class BodyLimit:
    """413 for a body over `max_bytes`, announced by Content-Length or counted as it
    streams in; the app then reads the body from memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = refusal(
            413, "body", f"body is over {self.max_bytes} bytes (max_body_bytes in collector.yml)"
        )
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await too_big(scope, receive, send)
            return
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class OriginGuard:
    """403 for a request from a browser page whose Origin is not configured. CORS alone
    only stops the browser reading the answer; a simple (form or text) POST would still
    arrive, so it is refused here too. Requests without Origin (servers) pass."""

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app = app
        self.allowed = set(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = dict(scope.get("headers", ())).get(b"origin")
        if (
            scope["type"] == "http"
            and origin is not None
            and "*" not in self.allowed
            and origin.decode("latin-1") not in self.allowed
        ):
            problem = f"origin {origin.decode('latin-1')!r} is not allowed (allowed_origins in collector.yml)"
            await refusal(403, "origin", problem)(scope, receive, send)
            return
        await self.app(scope, receive, send)
