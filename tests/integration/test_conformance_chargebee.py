"""Every object the Chargebee emulator sends, checked against Chargebee's own definition
(the SDK's response models plus the npm types' required fields and enums): list entries
with their companions, retrieves, write answers and error bodies of a generated scenario.
A bogus field put back into a render must be caught."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from sandbox.app import Sandbox
from sandbox.chargebee_render import ChargebeeRenderer, epoch
from sandbox.generate import GenerateOptions, write_scenario
from sandbox.server import DEFAULT_API_KEY
from tests.conformance.chargebee_schema import Report, validate_entry, validate_error

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
# Per catalog: the lists a site serves (list path -> entry key) and its write names.
LISTS = {
    "2.0": {"items": "item", "item_prices": "item_price"},
    "1.0": {"plans": "plan", "addons": "addon"},
}
SHARED_LISTS = {
    "customers": "customer",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "coupons": "coupon",
}
CANCEL = {"2.0": "cancel_for_items", "1.0": "cancel"}
# Lists that show deleted records only when asked (include_deleted=true).
WITH_DELETED = ("customers", "subscriptions", "invoices")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("scenario") / "scenario.json"
    write_scenario(GenerateOptions(customers=400, seed=5, as_of=AS_OF), path)
    return orjson.loads(path.read_bytes())


@pytest.fixture(params=["2.0", "1.0"])
def site(request, generated, serve_scenario) -> Iterator[tuple[str, httpx.Client]]:
    """(catalog, raw HTTP client) of a Chargebee site on each Product Catalog."""
    doc = generated | {"chargebee_product_catalog": request.param}
    sandbox: Sandbox = serve_scenario(doc, systems=("chargebee",))
    base = sandbox.urls["chargebee"] + "/api/v2"
    with httpx.Client(base_url=base, auth=(DEFAULT_API_KEY, "")) as client:
        yield request.param, client


def _pages(api: httpx.Client, path: str) -> Iterator[dict]:
    offset, deleted = None, {"include_deleted": "true"} if path in WITH_DELETED else {}
    while True:
        params = {"limit": 100} | deleted | ({"offset": offset} if offset else {})
        body = api.get(f"/{path}", params=params).raise_for_status().json()
        yield from body["list"]
        offset = body.get("next_offset")
        if not offset:
            return


def crawl(api: httpx.Client, catalog: str, report: Report) -> dict[str, list[dict]]:
    """Every list page of every resource (deleted records included), one retrieve per
    listed record (a deleted one answers 404), each scheduled change, the site's
    configuration."""
    listed: dict[str, list[dict]] = {}
    for path, key in (SHARED_LISTS | LISTS[catalog]).items():
        listed[path] = list(_pages(api, path))
        for index, entry in enumerate(listed[path]):
            validate_entry(entry, report, f"{path}.list[{index}]")
            ident = entry[key]["id"]
            response = api.get(f"/{path}/{ident}")
            if entry[key].get("deleted"):
                assert response.status_code == 404, (path, ident)
                validate_error(response.json(), 404, report, f"{path}/{ident}")
            else:
                validate_entry(response.raise_for_status().json(), report, f"{path}/{ident}")
    for entry in listed["subscriptions"]:
        if entry["subscription"]["has_scheduled_changes"]:
            ident = entry["subscription"]["id"]
            path = f"/subscriptions/{ident}/retrieve_with_scheduled_changes"
            validate_entry(api.get(path).raise_for_status().json(), report, path)
    configurations = api.get("/configurations").raise_for_status().json()["configurations"]
    for index, configuration in enumerate(configurations):
        validate_entry({"configuration": configuration}, report, f"configurations[{index}]")
    return listed


def _write(api: httpx.Client, report: Report, sub_id: str, action: str, data: dict) -> int:
    """One write (action "" = the 1.0 update); its answer or error is validated."""
    path = f"/subscriptions/{sub_id}" + (f"/{action}" if action else "")
    response = api.post(path, data=data)
    if response.status_code == 200:
        validate_entry(response.json(), report, f"{action}({sub_id})")
    else:
        validate_error(response.json(), response.status_code, report, f"{action}({sub_id})")
    return response.status_code


def _by_status(listed: dict[str, list[dict]]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for entry in listed["subscriptions"]:
        groups.setdefault(entry["subscription"]["status"], []).append(entry["subscription"])
    return groups


def _plan_changes(catalog: str, plan_id: str, coupon: str) -> list[tuple[str, dict]]:
    if catalog == "1.0":
        return [("", {"coupon_ids[0]": coupon}), ("", {"plan_id": plan_id})]
    return [
        ("update_for_items", {"coupon_ids[0]": coupon}),
        ("update_for_items", {"subscription_items[item_price_id][0]": plan_id}),
    ]


def _writes(
    api: httpx.Client, catalog: str, report: Report, listed: dict[str, list[dict]]
) -> Counter:
    """The write-backs a retention flow makes, on subscriptions of each status, plus the
    refusals the real API answers. Counts (status, action, HTTP status)."""
    later = epoch(AS_OF + timedelta(days=45))
    coupon = listed["coupons"][0]["coupon"]["id"]
    plans = listed["item_prices" if catalog == "2.0" else "plans"]
    statuses = Counter()
    for status, subs in _by_status(listed).items():
        for sub in subs[:3]:
            same_currency = [
                plan["id"]
                for entry in plans
                for plan in entry.values()
                if plan["currency_code"] == sub["currency_code"]
            ]
            calls = [
                *_plan_changes(catalog, same_currency[-1], coupon),
                ("change_term_end", {"term_ends_at": later}),
                ("pause", {"pause_option": "immediately", "resume_date": later}),
                ("resume", {"resume_option": "immediately"}),
                (CANCEL[catalog], {"cancel_option": "end_of_term"}),
                ("remove_scheduled_cancellation", {}),
                (CANCEL[catalog], {"cancel_option": "immediately"}),
            ]
            for action, data in calls:
                statuses[(status, action, _write(api, report, sub["id"], action, data))] += 1
    return statuses


def _errors(api: httpx.Client, catalog: str, report: Report) -> None:
    """404, 400 (bad parameter; the other catalog's endpoints), 401 and 405 bodies."""
    other = "1.0" if catalog == "2.0" else "2.0"
    responses = [
        api.get("/subscriptions/no-such-sub"),
        api.get("/subscriptions", params={"limit": 1000}),
        api.get("/customers", params={"bogus[is]": "x"}),
        httpx.get(str(api.base_url) + "/customers", auth=("wrong", "")),
        api.delete("/customers"),
    ]
    responses += [api.get(f"/{path}") for path in LISTS[other]]
    for response in responses:
        assert response.status_code >= 400
        validate_error(response.json(), response.status_code, report, str(response.url))


def test_every_object_conforms(site):
    catalog, api = site
    report = Report()
    listed = crawl(api, catalog, report)
    statuses = _writes(api, catalog, report, listed)
    _errors(api, catalog, report)
    print(f"\nChargebee objects validated per type (Product Catalog {catalog}):")
    for key, count in sorted(report.counts.items()):
        print(f"  {key:<40} {count}")
    kinds = "\n".join(f"{n:>6} x {kind}" for kind, n in report.kinds.most_common())
    assert report.violations == [], f"violations by kind:\n{kinds}"
    # the crawl reached every kind of object, and writes both succeeded and were refused
    plan_types = {"2.0": ("Item", "ItemPrice", "Subscription.SubscriptionItem"), "1.0": ("Plan",)}
    for key in (*plan_types[catalog], "Subscription", "Customer", "Invoice", "Invoice.LineItem"):
        assert report.counts[key] > 0, key
    assert report.counts["Coupon"] > 0 and report.counts["Configuration"] == 1
    assert report.counts["error"] >= 7
    assert any(code == 200 for (_, _, code) in statuses)
    assert any(code == 400 for (_, _, code) in statuses)
    # and the generated variety of real accounts: deletions, terms, scheduled changes,
    # several coupons, archived prices, deleted coupons, every invoice status (transfers:
    # tests/integration/test_chargebee_variety.py)
    subs = [entry["subscription"] for entry in listed["subscriptions"]]
    assert any(s["deleted"] for s in subs)
    assert any(e["customer"]["deleted"] for e in listed["customers"])
    assert any("remaining_billing_cycles" in s for s in subs)
    assert any(s["has_scheduled_changes"] for s in subs)
    assert any(len(s.get("coupons", ())) > 1 for s in subs)
    price_list = "item_prices" if catalog == "2.0" else "plans"
    assert any(p["status"] == "archived" for e in listed[price_list] for p in e.values())
    assert any(e["coupon"]["status"] == "deleted" for e in listed["coupons"])
    invoice_statuses = {e["invoice"]["status"] for e in listed["invoices"]}
    assert invoice_statuses >= {"pending", "payment_due", "paid", "not_paid", "voided"}


def test_a_bogus_field_in_a_render_is_caught(site, monkeypatch):
    """Put back a field Chargebee does not have (`created_at` on an item, as the emulator
    once sent; on 1.0 a plan's `item_id`) and drop a required one (Invoice.is_gifted):
    the validator names both."""
    catalog, api = site
    path, key, bogus = {
        "2.0": ("items", "item", "created_at"),
        "1.0": ("plans", "plan", "item_id"),
    }[catalog]
    render, invoice = getattr(ChargebeeRenderer, key), ChargebeeRenderer.invoice
    monkeypatch.setattr(ChargebeeRenderer, key, lambda self, r: render(self, r) | {bogus: 1})
    monkeypatch.setattr(
        ChargebeeRenderer,
        "invoice",
        lambda self, r: {k: v for k, v in invoice(self, r).items() if k != "is_gifted"},
    )
    report = Report()
    validate_entry(api.get(f"/{path}", params={"limit": 1}).json()["list"][0], report, key)
    validate_entry(api.get("/invoices", params={"limit": 1}).json()["list"][0], report, "inv")
    kind = {"item": "Item", "plan": "Plan"}[key]
    assert report.violations == [
        f"{key}.{key}.{bogus}: unknown field of {kind}",
        "inv.invoice.is_gifted: required field missing",
    ]
    assert report.kinds == {
        f"{kind}.{bogus}: unknown field of {kind}": 1,
        "Invoice.is_gifted: required field missing": 1,
    }
