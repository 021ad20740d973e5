"""Placeholder: being written."""

from sandbox.server import ApiError, Emulator, Response


class RecurlyEmulator(Emulator):
    name = "recurly"

    def register_routes(self) -> None:
        self.route("GET", "/ping", lambda request: {"ok": True})

    def render_error(self, error: ApiError) -> Response:
        return Response(error.status, {"error": {"message": error.message}})
