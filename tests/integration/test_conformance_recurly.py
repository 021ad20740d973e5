"""Every object the Recurly emulator sends, checked against Recurly's own OpenAPI file.

A generated scenario is served and crawled over real HTTP the way clients use the API:
every list page (envelope included) of the site-wide and account-scoped lists and of each
plan's add-ons, every record retrieved by id, the writes a retention flow makes (cancel, terminate, pause,
resume, extension, plan change, coupon redemption) and the error answers (400, 401, 404,
406, 409, 422, 429, 500, 503). Each body is validated against the response schema of the
operation that served it (tests/conformance/recurly_schema.py); a violation fails the
test with its path in the body. The vendor's file is the authority, not our emulator.
"""

from __future__ import annotations

import http.client
import threading
import time
from base64 import b64encode
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import pytest

from sandbox.generate import GenerateOptions, write_scenario
from sandbox.recurly_render import RecurlyRenderer
from sandbox.server import DEFAULT_API_KEY
from tests.conformance.recurly_schema import SPEC_PATH, RecurlySpec, Validator

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
ACCEPT = "application/vnd.recurly.v2021-02-25"
KEY = {"Idempotency-Key": "conformance-in-flight"}
LISTS = ("/accounts", "/subscriptions", "/plans", "/coupons", "/invoices")


@pytest.fixture(scope="session")
def recurly_spec() -> RecurlySpec:
    """Recurly's OpenAPI file, parsed once per session (CI has it at ../shared/specs)."""
    if not SPEC_PATH.exists():
        pytest.skip(f"Recurly's OpenAPI file is not at {SPEC_PATH} (../shared/specs absent)")
    return RecurlySpec.load()


@pytest.fixture(scope="module")
def scenario_doc(tmp_path_factory) -> dict:
    """A generated scenario (every Recurly shape the generator makes), as a document."""
    path = tmp_path_factory.mktemp("scenario") / "scenario.json"
    write_scenario(GenerateOptions(customers=600, seed=7, as_of=AS_OF), path)
    return orjson.loads(path.read_bytes())


class Api:
    """Raw HTTP to the emulator with the SDK's headers; every answer is validated."""

    def __init__(self, url: str, validator: Validator, api_key: str = DEFAULT_API_KEY):
        self.url = url
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.validator = validator
        self.headers = {
            "Accept": ACCEPT,
            "Authorization": "Basic " + b64encode(f"{api_key}:".encode()).decode(),
            "Content-Type": "application/json",
        }

    def call(
        self, method: str, path: str, body: dict | None = None, **headers: str
    ) -> tuple[int, Any]:
        payload = orjson.dumps(body) if body is not None else None
        self.connection.request(method, path, body=payload, headers={**self.headers, **headers})
        response = self.connection.getresponse()
        raw = response.read()
        parsed = orjson.loads(raw) if raw else None
        self.validator.answer(method, path, response.status, parsed)
        return response.status, parsed

    def every_page(self, path: str) -> list[dict]:
        records: list[dict] = []
        url: str | None = f"{path}?limit=200&sort=updated_at&order=asc"
        while url:
            status, page = self.call("GET", url)
            assert status == 200, page
            records += page["data"]
            url = page["next"] if page["has_more"] else None
        return records


def crawl(api: Api, emulator: Any) -> Counter[str]:
    """Lists, retrieves, writes and errors, as described in the module docstring; returns
    the answers made per kind (so the test can tell the crawl reached everything)."""
    made: Counter[str] = Counter()
    listed = {path: api.every_page(path) for path in LISTS}
    made.update({f"list {path}": len(rows) for path, rows in listed.items()})
    for path, rows in listed.items():
        for row in rows:
            api.call("GET", f"{path}/{quote(row['id'], safe='')}")
            made[f"get {path}"] += 1
    for plan in listed["/plans"]:
        for add_on in api.every_page(f"/plans/{plan['id']}/add_ons"):
            made["list plan add_ons"] += 1
            api.call("GET", f"/plans/{plan['id']}/add_ons/{add_on['id']}")
            made["get plan add_on"] += 1
    for account in listed["/accounts"]:
        for scoped in ("subscriptions", "invoices", "coupon_redemptions"):
            status, _ = api.call("GET", f"/accounts/{account['id']}/{scoped}?limit=200")
            made[f"list account {scoped}"] += status == 200
        status, _ = api.call("GET", f"/accounts/{account['id']}/coupon_redemptions/active")
        made["list account active redemptions"] += status == 200
    made.update(_variety(api, listed))
    made.update(_writes(api, listed))
    made.update(_errors(api, emulator, listed))
    return made


# What a years-old account holds beside the plain case, as the crawl must meet it: each
# kind is counted over the listed objects (and the filters that select it are called).
VARIETY: dict[str, tuple[str, Callable[[dict], bool]]] = {
    "archived plan": ("/plans", lambda p: p["state"] == "inactive" and bool(p["deleted_at"])),
    "plan in several currencies": ("/plans", lambda p: len(p["currencies"]) > 1),
    "expired coupon": ("/coupons", lambda c: c["state"] == "expired" and bool(c["expired_at"])),
    "closed account": ("/accounts", lambda a: a["state"] == "inactive" and bool(a["deleted_at"])),
    "multi-cycle term": ("/subscriptions", lambda s: (s["total_billing_cycles"] or 0) > 1),
    "pending change": ("/subscriptions", lambda s: s["pending_change"] is not None),
    "credit invoice": ("/invoices", lambda i: i["type"] == "credit"),
    "past due invoice": ("/invoices", lambda i: i["state"] == "past_due"),
    "failed invoice": ("/invoices", lambda i: i["state"] == "failed"),
}
VARIETY_FILTERS = (
    "/plans?state=inactive",
    "/invoices?type=credit",
    "/invoices?state=past_due",
    "/invoices?state=closed",
    "/accounts?past_due=true",
)


def _variety(api: Api, listed: dict[str, list[dict]]) -> Counter[str]:
    made: Counter[str] = Counter()
    for kind, (path, test) in VARIETY.items():
        made[f"variety {kind}"] = sum(1 for row in listed[path] if test(row))
    own = {plan["code"]: plan["currencies"][0]["currency"] for plan in listed["/plans"]}
    made["variety subscription in a plan's further currency"] = sum(
        sub["currency"] != own[sub["plan"]["code"]] for sub in listed["/subscriptions"]
    )
    for path in VARIETY_FILTERS:
        status, page = api.call("GET", f"{path}&limit=200")
        assert status == 200, page
        made[f"filtered {path}"] = len(page["data"])
    return made


def _writes(api: Api, listed: dict[str, list[dict]]) -> Counter[str]:
    made: Counter[str] = Counter()
    active = [s for s in listed["/subscriptions"] if s["state"] == "active"]
    assert len(active) >= 8, "the scenario needs active subscriptions to write to"
    subs = iter(active)
    base = "/subscriptions/{}"

    def write(kind: str, method: str, path: str, body: dict | None = None) -> dict:
        status, answer = api.call(method, path, body)
        assert status in (200, 201), (kind, status, answer)
        made[kind] += 1
        return answer

    write("cancel", "PUT", base.format(next(subs)["id"]) + "/cancel", {"timeframe": "term_end"})
    write("terminate", "DELETE", base.format(next(subs)["id"]) + "?refund=none")
    paused = next(subs)
    write("pause", "PUT", base.format(paused["id"]) + "/pause", {"remaining_pause_cycles": 2})
    write("resume", "PUT", base.format(paused["id"]) + "/resume")
    extended = next(subs)
    later = datetime.fromisoformat(extended["current_period_ends_at"]) + timedelta(days=30)
    next_bill = later.strftime("%Y-%m-%dT%H:%M:%SZ")
    write("extension", "PUT", base.format(extended["id"]), {"next_bill_date": next_bill})
    changed, other = next(
        (sub, plan)
        for sub in subs
        for plan in listed["/plans"]
        if plan["code"] != sub["plan"]["code"]
        and plan["currencies"][0]["currency"] == sub["currency"]
        and len(sub["add_ons"]) > 1  # the change answer shows the add-ons kept
    )
    path = base.format(changed["id"]) + "/change"
    write("plan change", "POST", path, {"plan_code": other["code"]})
    redeemed = next(subs)
    coupon = next(c for c in listed["/coupons"] if c["discount"]["type"] == "percent")
    write(
        "coupon redemption",
        "POST",
        f"/accounts/{redeemed['account']['id']}/coupon_redemptions/active",
        {"coupon_id": coupon["id"], "subscription_id": redeemed["id"]},
    )
    for sub in (paused, extended, changed, redeemed):
        write("get after write", "GET", base.format(sub["id"]))
    return made


def _errors(api: Api, emulator: Any, listed: dict[str, list[dict]]) -> Counter[str]:
    """One answer per error the emulator makes, each validated as an Error body."""
    made: Counter[str] = Counter()
    expired = next(s for s in listed["/subscriptions"] if s["state"] == "expired")
    cases = [
        ("GET", "/subscriptions/nosuchsub", None, {}, 404),
        ("GET", "/accounts?limit=0", None, {}, 400),
        ("PUT", f"/subscriptions/{expired['id']}/cancel", {}, {}, 422),
        ("PUT", f"/subscriptions/{expired['id']}/pause", {}, {}, 422),
        ("GET", "/plans", None, {"Accept": "application/json"}, 406),
        ("GET", "/plans", None, {"Authorization": "Basic " + b64encode(b"bad:").decode()}, 401),
    ]
    for method, path, body, headers, expected in cases:
        status, _ = api.call(method, path, body, **headers)
        assert status == expected, (method, path, status)
        made[f"error {status}"] += 1
    made["error 409"] += _in_flight_duplicate(api, emulator, listed)
    for fault in ("429", "500", "503"):
        emulator.faults.script.append(fault)
        status, _ = api.call("GET", "/plans")
        assert status == int(fault)
        made[f"error {status}"] += 1
    return made


def _in_flight_duplicate(api: Api, emulator: Any, listed: dict[str, list[dict]]) -> int:
    """A write whose key is still being processed (the first try is slowed) answers 409."""
    sub = next(s for s in listed["/subscriptions"] if s["state"] == "active")
    path = f"/subscriptions/{sub['id']}"
    emulator.faults.slow_seconds = 0.5
    emulator.faults.script.append("slow")
    first = Api(api.url, api.validator)
    slow = threading.Thread(target=first.call, args=("PUT", path, {}), kwargs=KEY)
    slow.start()
    time.sleep(0.15)
    status, _ = api.call("PUT", path, {}, **KEY)
    slow.join()
    assert status == 409
    return 1


def test_every_recurly_answer_matches_recurlys_openapi(recurly_spec, scenario_doc, serve_scenario):
    sandbox = serve_scenario(scenario_doc, systems=("recurly",))
    validator = Validator(recurly_spec)
    made = crawl(Api(sandbox.urls["recurly"], validator), sandbox.emulator("recurly"))

    print("\nRecurly answers made:", dict(sorted(made.items())))
    print("Recurly objects validated per schema:", dict(sorted(validator.counts.items())))
    assert not validator.violations, "\n".join(sorted(set(validator.violations))[:60])
    for schema in ("Account", "Subscription", "Plan", "Coupon", "Invoice", "Error"):
        assert validator.counts[schema] > 0, f"no {schema} was validated"
    for schema in ("SubscriptionChange", "CouponRedemption", "CouponRedemptionMini"):
        assert validator.counts[schema] > 0, f"no {schema} was validated"
    for schema in ("AddOn", "AddOnMini", "SubscriptionAddOn", "SubscriptionAddOnTier", "Tier"):
        assert validator.counts[schema] > 0, f"no {schema} was validated"
    for name in made:
        if name.startswith(("variety ", "filtered ")):
            assert made[name] > 0, f"the crawl met no {name}"


def test_a_field_put_back_into_a_render_is_caught(
    recurly_spec, scenario_doc, serve_scenario, monkeypatch
):
    """A legacy v2 field (`plan_code`) and a wrongly typed one are reported, with paths."""
    original = RecurlyRenderer.subscription

    def with_legacy_fields(self, sub: dict, now: datetime) -> dict:
        return {**original(self, sub, now), "plan_code": sub["plan_id"], "quantity": "1"}

    monkeypatch.setattr(RecurlyRenderer, "subscription", with_legacy_fields)
    sandbox = serve_scenario(scenario_doc, systems=("recurly",))
    validator = Validator(recurly_spec)
    api = Api(sandbox.urls["recurly"], validator)
    api.every_page("/subscriptions")

    assert any(
        "data[0].plan_code: unknown field of Subscription" in v for v in validator.violations
    ), validator.violations[:5]
    assert any("quantity: '1' is not of type integer" in v for v in validator.violations)
