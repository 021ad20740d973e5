"""The collector's HTTP API (FastAPI): the cancel page posts a visit when it lands and its
outcome when the visitor acts, each signed by the company's backend.

Every request is checked in this order: origin and size (guards.py), JSON shape (pydantic,
422 naming the field; 400 for a body that is not JSON), the app's signature over
[app_id, billing_system, billing_id, timestamp] and the timestamp's age (403), then the
exit-sessions contract in the log writer (422). A session is acknowledged (201/200) only
once committed to the session log."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from collector.dispatch import Dispatcher, FastPath, Outbox
from collector.guards import BodyLimit, OriginGuard, refusal, refused
from collector.log import Landing, Result, SessionLog, Update, backlog, connect
from collector.segments import Publisher
from collector.sessions import Problem
from collector.settings import CollectorSettings
from webhooks.signing import verify

log = logging.getLogger(__name__)

_TEXT = Field(default=None, max_length=1000)


class Outcome(BaseModel):
    """The fields a visit's outcome sets (validation.md §1); all optional."""

    model_config = ConfigDict(extra="forbid")
    email: str | None = _TEXT
    action: str | None = Field(
        default=None, description="canceled, offer_accepted, deflected, or empty"
    )
    action_at: str | None = Field(
        default=None, description="ISO 8601; defaults to the receive time when action is set"
    )
    offer_id: str | None = _TEXT
    offer_type: str | None = Field(
        default=None, description="pause, discount, extension, plan_change, custom"
    )
    page_id: str | None = _TEXT
    cancel_reason: str | None = _TEXT
    custom: dict[str, Any] | None = None


class Signed(BaseModel):
    """What the company's backend signed for this page view."""

    app_id: str = Field(min_length=1, max_length=200)
    billing_system: str = Field(min_length=1, description="stripe, recurly or chargebee")
    billing_id: str = Field(min_length=1, max_length=200)
    timestamp: int = Field(description="Unix seconds when the backend signed")
    signature: str = Field(
        min_length=1,
        max_length=200,
        description="hex HMAC-SHA256(secret, app_id\\nbilling_system\\nbilling_id\\ntimestamp)",
    )


class LandingBody(Outcome, Signed):
    """POST /v1/sessions: a visit as the page lands (its outcome too, if known)."""

    session_id: str = Field(min_length=1, max_length=200)
    started_at: str | None = Field(
        default=None, description="ISO 8601; defaults to the receive time"
    )


class UpdateBody(Outcome, Signed):
    """PATCH /v1/sessions/{session_id}: the outcome, with the landing's signed identity."""

    session_id: str | None = Field(default=None, description="if sent, the path's")


class Refused(Exception):
    def __init__(self, status: int, problems: list[Problem]) -> None:
        self.status = status
        self.problems = problems


def authenticate(settings: CollectorSettings, body: Signed, max_age: int) -> None:
    """The signature first (a wrong one says nothing about the timestamp), then the
    timestamp: at most `max_age` old, and not from further ahead than the replay window."""
    secret = settings.secrets.get(body.app_id)
    if secret is None:
        raise Refused(403, [Problem("app_id", "app_id is not configured on this collector")])
    parts = [body.app_id, body.billing_system, body.billing_id, str(body.timestamp)]
    if not verify(secret, parts, body.signature):
        raise Refused(
            403,
            [
                Problem(
                    "signature",
                    "signature does not match app_id, billing_system, billing_id and timestamp",
                )
            ],
        )
    age = int(time.time()) - body.timestamp
    window = settings.config.replay_window_seconds
    if age > max_age or age < -window:
        raise Refused(
            403,
            [
                Problem(
                    "timestamp",
                    f"timestamp is {age} s old, outside the accepted {-window}..{max_age} s: "
                    "have the backend sign again",
                )
            ],
        )


def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 without echoing the input back (it may hold the signature); a body
    that is not JSON at all is a 400."""
    errors = exc.errors()
    if any(e["type"] == "json_invalid" for e in errors):
        message = errors[0].get("ctx", {}).get("error", "")
        return refusal(400, "body", f"body is not valid JSON: {message}".rstrip(": "))
    return refused(
        422,
        [Problem(".".join(str(p) for p in e["loc"][1:]) or "body", e["msg"]) for e in errors],
    )


def _answer(result: Result) -> JSONResponse:
    if result.problems:
        return refused(result.status, result.problems)
    return JSONResponse({"session": result.row, "stored": result.stored}, status_code=result.status)


def create_app(
    settings: CollectorSettings,
    *,
    fast_path: FastPath | None = None,
    outbox: Outbox | None = None,
) -> FastAPI:
    """The collector app; its lifespan runs the log writer, the publisher and the
    dispatcher (so tests and the end-to-end run host it in-process or under uvicorn)."""
    session_log = SessionLog(settings.state_db)
    publisher = Publisher(
        settings.state_db, settings.drop_folder, settings.publish_interval_seconds
    )
    dispatcher = Dispatcher(settings.state_db, outbox, fast_path)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        session_log.start()
        publisher.start()
        dispatcher.start()
        try:
            yield
        finally:
            session_log.stop()
            publisher.stop()
            dispatcher.stop()

    app = FastAPI(
        title="Retention session collector",
        version="1",
        lifespan=lifespan,
        description=__doc__,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Refused, lambda _, e: refused(e.status, e.problems))

    async def commit(change: Landing | Update) -> JSONResponse:
        try:
            result = await asyncio.wrap_future(session_log.submit(change))
        except Exception as exc:  # the disk, not the request: the page should retry
            log.error("session not stored: %s", type(exc).__name__)
            return refusal(503, "body", "the session could not be stored now: retry")
        if result.stored:
            dispatcher.wake()
        return _answer(result)

    @app.post("/v1/sessions", status_code=201, summary="A visit lands on the cancel page")
    async def land(body: LandingBody) -> JSONResponse:
        authenticate(settings, body, settings.config.replay_window_seconds)
        return await commit(Landing(body.model_dump(exclude={"timestamp", "signature"})))

    @app.patch("/v1/sessions/{session_id}", summary="The visit's outcome, offer or action")
    async def update(session_id: str, body: UpdateBody) -> JSONResponse:
        authenticate(settings, body, settings.config.update_window_seconds)
        if body.session_id not in (None, session_id):
            raise Refused(422, [Problem("session_id", "session_id differs from the path's")])
        identity = body.model_dump(include={"app_id", "billing_system", "billing_id"})
        fields = body.model_dump(include=set(Outcome.model_fields), exclude_unset=True)
        return await commit(Update(session_id, identity, fields))

    @app.get("/healthz", summary="The collector is up, and how far behind its log is")
    def healthz() -> JSONResponse:
        """503 when the log writer is not running (nothing could be acknowledged)."""
        with closing(connect(settings.state_db)) as con:
            counts = backlog(con)
        up = session_log.alive()
        return JSONResponse(
            {"status": "ok" if up else "log writer stopped", **counts},
            status_code=200 if up else 503,
        )

    app.add_middleware(BodyLimit, max_bytes=settings.config.max_body_bytes)
    app.add_middleware(OriginGuard, allowed=settings.config.allowed_origins)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.config.allowed_origins,
        allow_methods=["GET", "POST", "PATCH"],
        allow_headers=["content-type"],
    )
    return app
