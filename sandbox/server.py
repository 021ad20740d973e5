"""HTTP plumbing shared by the three emulators: routing, auth, idempotency, faults, logs.

Each emulator (stripe_api, recurly_api, chargebee_api) subclasses `Emulator`, declares its
routes and renders errors in its API's shape; this module turns that into a threaded
HTTP/1.1 server (keep-alive, as the SDKs expect) that also

- refuses any key but the configured one with the API's 401,
- replays a repeated idempotency key's first response without applying it again,
- injects faults (429 with rate-limit headers, 500/503, slow answers, dropped
  connections before or after the write is applied) by share or by script,
- delays each API request by a latency model and enforces the vendor's documented rate
  limits per API key when asked (`sandbox.network`),
- logs every request (method, path, parameters without secrets, idempotency key, status,
  whether it was an idempotent replay, sandbox time) for tests to read, in process or at `GET /_sandbox/requests`.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import itertools
import random
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from billing_clients.targets import SANDBOX_API_KEY
from sandbox.clock import Clock
from sandbox.network import DEFAULT_CHARGEBEE_PLAN, Latency, RateLimits, Verdict, vendor_limits
from sandbox.store import SystemStore

DEFAULT_API_KEY = SANDBOX_API_KEY  # what the pipeline expects of a sandbox
ADMIN_PREFIX = "/_sandbox/"
_SECRET_PARAM = re.compile(r"(api_?key|secret|password|token|card\[number\]|cvc)", re.I)
# How long a request's body may take to arrive after its headers before the connection
# counts as dropped (a client that stalls mid-body holds a server thread until then).
BODY_TIMEOUT_SECONDS = 30
FAULT_KINDS = ("429", "500", "503", "slow", "drop", "drop_after")


# --------------------------------------------------------------------------- requests


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    body_pairs: list[tuple[str, str]]
    json_body: Any
    headers: dict[str, str]  # lower-cased names

    @property
    def params(self) -> dict[str, str]:
        """Query and form parameters flattened, last value wins (`a[b]` kept verbatim)."""
        return dict(self.query + self.body_pairs)

    def nested(self) -> dict:
        """Query + form parameters decoded the way Stripe and Chargebee encode nesting:
        `items[0][price]=p` -> {"items": [{"price": "p"}]}, `expand[]=x` -> {"expand": ["x"]}."""
        return decode_nested(self.query + self.body_pairs)


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-able, or bytes
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False  # an idempotent replay: nothing was applied
    budget: Verdict | None = None  # the rate-limit budget after this request (None: no limits)

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return orjson.dumps(self.body)


class ApiError(Exception):
    """Raised by a handler; the emulator renders it in its API's error shape."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def decode_nested(pairs: list[tuple[str, str]]) -> dict:
    root: dict = {}
    for key, value in pairs:
        names = _split_key(key)
        node: Any = root
        for name, following in itertools.pairwise(names):
            if not isinstance(node, dict):
                break
            node = node.setdefault(name, [] if following == "" else {})
        if isinstance(node, list):
            node.append(value)
        elif isinstance(node, dict):
            node[names[-1]] = value
    return _lists_from_digit_dicts(root)


def _split_key(key: str) -> list[str]:
    """`items[0][price]` -> ["items", "0", "price"]; `expand[]` -> ["expand", ""]."""
    head, bracket, rest = key.partition("[")
    if not bracket:
        return [key]
    return [head, *re.findall(r"\[?([^\[\]]*)\]", "[" + rest)]


def _lists_from_digit_dicts(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _lists_from_digit_dicts(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
    elif isinstance(node, list):
        return [_lists_from_digit_dicts(v) for v in node]
    return node


# --------------------------------------------------------------------------- faults


@dataclass
class FaultConfig:
    """Shares of requests (0..1) answered with each fault, and a script that wins over them.

    `script` is a list of fault kinds applied to the next API requests in order
    (429, 500, 503, slow, drop, drop_after); `only_paths` limits faults to paths that
    contain one of its strings (empty = every API path).
    """

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_slow: float = 0.0
    rate_drop: float = 0.0
    rate_drop_after: float = 0.0
    slow_seconds: float = 2.0
    retry_after: int = 1
    seed: int | None = None
    only_paths: list[str] = field(default_factory=list)
    script: deque = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self.script = deque(self.script)

    def pick(self, path: str) -> str | None:
        if self.only_paths and not any(p in path for p in self.only_paths):
            return None
        if self.script:
            return self.script.popleft()
        roll = self._rng.random()
        for kind in FAULT_KINDS:
            share = getattr(self, f"rate_{kind}")
            if roll < share:
                return kind
            roll -= share
        return None

    def public(self) -> dict:
        data = asdict(self)
        data["script"] = list(self.script)
        return data


# --------------------------------------------------------------------------- emulator


Handler = Callable[..., Any]


class Emulator:
    """Base of the three API emulators. Subclasses set `name`, `idempotency_header`,
    `request_id_header`, fill `routes` in `register_routes`, and implement the error
    renderers in their API's shape."""

    name = "base"
    idempotency_header: str | None = None
    request_id_header = "Request-Id"
    replay_header: str | None = None
    idempotent_methods: tuple[str, ...] = ("POST",)

    def __init__(
        self,
        store: SystemStore,
        api_key: str = DEFAULT_API_KEY,
        faults: FaultConfig | None = None,
        rate_limits: RateLimits | None = None,
        latency: Latency | None = None,
        extra_keys: tuple[str, ...] = (),
    ):
        """`api_key` is the key the admin calls and tests use; `extra_keys` are further keys
        the API accepts (each has its own rate-limit budget, as separate keys of separate
        accounts do)."""
        self.store = store
        self.clock: Clock = store.clock
        self.api_key = api_key
        self.api_keys = frozenset({api_key, *extra_keys})
        self.faults = faults or FaultConfig()
        self.rate_limits = rate_limits
        self.latency = latency or Latency()
        self.request_log: list[dict] = []
        self._idempotent: dict[str, tuple[str, Response]] = {}
        self.routes: list[tuple[str, re.Pattern, Handler]] = []
        self.register_routes()

    # -- to implement ---------------------------------------------------------------
    def register_routes(self) -> None:
        raise NotImplementedError

    def render_error(self, error: ApiError) -> Response:
        raise NotImplementedError

    def unauthorized(self) -> ApiError:
        return ApiError(401, "unauthorized", "Invalid API key provided.")

    def not_found(self, what: str, ident: str) -> ApiError:
        return ApiError(404, "not_found", f"No such {what}: '{ident}'")

    def rate_limited(self, retry_after: int, verdict: Verdict | None = None) -> Response:
        """The 429 of a fault (`verdict` None: the fault's `retry_after`) or of a refusing
        budget (`verdict`), in the API's shape."""
        response = self.render_error(ApiError(429, "rate_limit", "Too many requests."))
        response.headers.update(self.rate_limit_headers(retry_after, verdict))
        return response

    def rate_limit_headers(
        self, retry_after: int, verdict: Verdict | None = None
    ) -> dict[str, str]:
        return {"Retry-After": str(retry_after)}

    def server_error(self, status: int) -> Response:
        return self.render_error(ApiError(status, "api_error", "The server had a problem."))

    # -- helpers for subclasses -----------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    def now(self) -> datetime:
        return self.clock.now()

    def new_request_id(self) -> str:
        return "req_" + secrets.token_hex(8)

    # -- dispatch -------------------------------------------------------------------
    def presented_key(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
        if scheme.lower() == "basic":
            try:
                return base64.b64decode(value).decode().partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                return None
        return None

    def endpoint(self, request: Request) -> str:
        """The named operation a request calls (method and route, ids not included), as
        per-endpoint rate limits count it; unknown paths share one (a client probing
        junk paths must not grow a limiter per path)."""
        for method, pattern, _ in self.routes:
            if method == request.method and pattern.match(request.path):
                return f"{method} {pattern.pattern}"
        return f"{request.method} (no route)"

    def handle(self, request: Request) -> tuple[Response, str | None]:
        """Answer one request; the second value is a connection fault to apply after
        answering (`drop` before anything is done, `drop_after` once it is done).
        The latency is slept first, holding no lock: concurrent requests overlap."""
        if request.path.startswith(ADMIN_PREFIX):
            return self._admin(request), None
        self.latency.sleep()
        with self.store.lock:
            self.store.advance(self.now())
        fault = self.faults.pick(request.path)
        if fault == "slow":
            time.sleep(self.faults.slow_seconds)
        if fault == "drop":
            self._log(request, 0, fault)
            return Response(0), "drop"
        budget = None
        if fault == "429":
            response = self.rate_limited(self.faults.retry_after)
        else:
            budget = self._count(request)
            if budget is not None and not budget.allowed:
                response = self.rate_limited(budget.retry_after_seconds(), budget)
            elif fault in ("500", "503"):
                response = self.server_error(int(fault))
            else:
                response = self._answer(request)
        response.budget = budget
        response.headers.setdefault(self.request_id_header, self.new_request_id())
        limited = budget.reason if budget is not None and not budget.allowed else None
        self._log(request, response.status, fault, response.replayed, limited)
        return response, "drop" if fault == "drop_after" else None

    def _count(self, request: Request) -> Verdict | None:
        """The request counted against the presented key's budgets (None: no limits)."""
        if self.rate_limits is None:
            return None
        key = self.presented_key(request)
        return self.rate_limits.take(key, request.method, self.endpoint(request))

    def log_truncated(self, request: Request) -> None:
        """A request whose body was cut short: logged as a dropped connection, never
        answered or applied."""
        self._log(request, 0, "truncated")

    def _answer(self, request: Request) -> Response:
        if self.presented_key(request) not in self.api_keys:
            return self.render_error(self.unauthorized())
        key = (
            request.headers.get(self.idempotency_header.lower())
            if self.idempotency_header
            else None
        )
        if key and request.method in self.idempotent_methods:
            with self.store.lock:
                body = orjson.dumps(request.json_body, option=orjson.OPT_SORT_KEYS).decode()
                fingerprint = (
                    f"{request.method} {request.path} {sorted(request.params.items())} {body}"
                )
                stored = self._idempotent.get(key)
                if stored is not None:
                    return self._replay(stored, fingerprint)
                response = self._route(request)
                if response.status < 500:
                    self._idempotent[key] = (fingerprint, response)
                return response
        return self._route(request)

    def _replay(self, stored: tuple[str, Response], fingerprint: str) -> Response:
        first_fingerprint, first = stored
        if first_fingerprint != fingerprint:
            return self.render_error(
                ApiError(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with.",
                )
            )
        headers = dict(first.headers)
        if self.replay_header:
            headers[self.replay_header] = "true"
        return Response(first.status, first.body, headers, replayed=True)

    def _route(self, request: Request) -> Response:
        path_matched = False
        for method, pattern, handler in self.routes:
            match = pattern.match(request.path)
            if not match:
                continue
            path_matched = True
            if method != request.method:
                continue
            try:
                with self.store.lock:
                    result = handler(request, **match.groupdict())
            except ApiError as error:
                return self.render_error(error)
            return result if isinstance(result, Response) else Response(200, result)
        if path_matched:
            return self.render_error(ApiError(405, "method_not_allowed", "Method not allowed."))
        return self.render_error(
            ApiError(404, "not_found", f"Unrecognized request URL ({request.path}).")
        )

    def _log(
        self,
        request: Request,
        status: int,
        fault: str | None,
        replayed: bool = False,
        rate_limited: str | None = None,
    ) -> None:
        """`rate_limited`: the budget that refused the request (e.g. "global-rate")."""
        params = {
            k: ("[redacted]" if _SECRET_PARAM.search(k) else v)
            for k, v in request.query + request.body_pairs
        }
        if isinstance(request.json_body, dict):
            params.update(
                {k: v for k, v in request.json_body.items() if not _SECRET_PARAM.search(k)}
            )
        self.request_log.append(
            {
                "method": request.method,
                "path": request.path,
                "params": params,
                "idempotency_key": request.headers.get((self.idempotency_header or "").lower()),
                "status": status,
                "fault": fault,
                "replayed": replayed,
                "rate_limited": rate_limited,
                "at": self.now().isoformat(),
                "wall_time": time.time(),
            }
        )

    # -- admin: control and observation for tests in other processes ----------------
    def _admin(self, request: Request) -> Response:
        if self.presented_key(request) not in self.api_keys:
            return self.render_error(self.unauthorized())
        what = request.path[len(ADMIN_PREFIX) :]
        if what == "requests" and request.method == "GET":
            return Response(200, {"data": self.request_log})
        if what == "requests" and request.method == "DELETE":
            self.request_log.clear()
            return Response(200, {"cleared": True})
        if what == "faults" and request.method == "POST":
            body = request.json_body or {}
            self.faults = FaultConfig(**body)
            return Response(200, self.faults.public())
        if what == "clock" and request.method == "GET":
            return Response(200, {"now": self.now().isoformat(), "frozen": self.clock.frozen})
        if what == "network" and request.method == "POST":
            return self._set_network(request.json_body or {})
        return Response(404, {"error": f"unknown sandbox admin call {request.method} {what}"})

    def _set_network(self, body: dict) -> Response:
        """Replace the network model of a running server, as `serve`'s flags set it:
        `{"latency_ms": 300, "jitter_ms": 100, "seed": 1, "rate_limits": "live",
        "chargebee_plan": "performance"}`, every field optional (absent = 0, off, the
        default plan). A bench measures with and without it on one loaded scenario; the
        budgets start full again."""
        try:
            latency = Latency(
                float(body.get("latency_ms", 0)), float(body.get("jitter_ms", 0)), body.get("seed")
            )
            plan = body.get("chargebee_plan", DEFAULT_CHARGEBEE_PLAN)
            limits = vendor_limits(self.name, body.get("rate_limits", "off"), plan)
        except (TypeError, ValueError) as exc:
            return Response(400, {"error": f"sandbox network settings {body}: {exc}"})
        self.latency, self.rate_limits = latency, limits
        settings = {"latency_ms": latency.mean_ms, "jitter_ms": latency.jitter_ms}
        return Response(200, settings | {"rate_limits": body.get("rate_limits", "off")})


# --------------------------------------------------------------------------- HTTP server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms a request on keep-alive connections).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header is the sandbox clock, as a real server's is its own time:
        clients can tell how old their cursors are from it."""
        return email.utils.format_datetime(self.server.emulator.now(), usegmt=True)

    def _read_body(self) -> bytes | None:
        """The whole body, or None when fewer bytes than `Content-Length` arrive: the client
        died, or the connection broke, between its headers and its body (httpx and urllib3
        send them in two writes). A real API never acts on half a request, so such a
        request is answered with nothing: no change, no idempotency key stored."""
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0:
            return b""
        self.connection.settimeout(BODY_TIMEOUT_SECONDS)
        try:
            raw = self.rfile.read(length)  # buffered: returns short only at EOF
        except OSError:
            return None
        finally:
            self.connection.settimeout(None)
        return raw if len(raw) == length else None

    def _serve(self) -> None:
        split = urlsplit(self.path)
        try:
            raw = self._read_body()
        except ValueError:  # a Content-Length that is not a number
            self.send_error(400, "Bad Content-Length")
            return
        body_pairs, json_body = _parse_body(raw or b"", self.headers.get("Content-Type", ""))
        request = Request(
            method=self.command,
            path=split.path,
            query=parse_qsl(split.query, keep_blank_values=True),
            body_pairs=body_pairs,
            json_body=json_body,
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        if raw is None:
            self.server.emulator.log_truncated(request)
            self._drop()
            return
        response, fault = self.server.emulator.handle(request)
        if fault == "drop" and response.status == 0:
            self._drop()
            return
        payload = b"" if self.command == "HEAD" else response.encoded()
        self.send_response(response.status)
        # An emulator may name its own media type (Recurly's vnd type); never send two.
        headers = {"Content-Type": "application/json; charset=utf-8", **response.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if fault == "drop":  # the write happened; the answer is lost on the way
            self._drop()
            return
        self.wfile.write(payload)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve


def _parse_body(raw: bytes, content_type: str) -> tuple[list[tuple[str, str]], Any]:
    """Form pairs or a JSON document, by content type (unparseable JSON is None)."""
    if not raw:
        return [], None
    if "json" not in content_type:
        return parse_qsl(raw.decode(), keep_blank_values=True), None
    try:
        return [], orjson.loads(raw)
    except orjson.JSONDecodeError:
        return [], None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator):
        self.emulator = emulator
        super().__init__(address, _Handler)


class RunningServer:
    """An emulator served on a background thread; `url` is its base address."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0):
        self.emulator = emulator
        self._server = _Server((host, port), emulator)
        self.host, self.port = self._server.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll
            name=f"sandbox-{emulator.name}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
