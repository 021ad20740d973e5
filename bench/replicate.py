"""A large warehouse from a small one, in DuckDB SQL: the raw tables of a warehouse that
`retention extract` loaded from the project's generator, each customer's world copied k
times, so the marts bench reaches 10M subscriptions without extracting them (the
generator, the sandbox and the SDKs move about 1,000 customers per 10 s here).

Copy 0 is the base itself; copy i > 0 prefixes every id of a per-customer record with
`c<i>~` (customers, subscriptions, invoices, coupon redemptions, exit sessions: their own
ids and the ids they point to), and keeps every time, amount and status. So the shapes are
the generator's (invoices per subscription, sessions per customer, the catalog), ids
within a copy sort as in the base (a common prefix), and no record of one copy refers to
another's: every row-level mart of k copies holds each base row k times, and every
aggregate mart the base's rows with additive figures times k (`copies_check`).
The catalog (plans, prices, products, coupons), the syncs (the validation time) and the
tables no model reads stay one copy: a larger account has more customers, not more plans.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

RAW_SCHEMAS = ("raw_stripe", "raw_recurly", "raw_chargebee", "raw_exit_sessions")
# The per-customer tables, copied k times.
PER_CUSTOMER = {
    "raw_stripe": ("customers", "subscriptions", "invoices"),
    "raw_recurly": ("customers", "subscriptions", "invoices", "coupon_redemptions"),
    "raw_chargebee": ("customers", "subscriptions", "invoices"),
    "raw_exit_sessions": ("exit_sessions",),
}
# Columns of those tables that hold a per-customer record's id (its own, or the customer,
# subscription or session it points to), by dlt's column names in any of the systems.
ID_COLUMNS = frozenset(
    {
        "id",
        "uuid",
        "code",  # Recurly: the account code, our customer_id
        "number",  # Recurly: the invoice number, our invoice_id
        "customer",
        "customer_id",
        "subscription_id",
        "account__id",
        "account__code",
        "pending_change__subscription_id",
        "parent__subscription_details__subscription",
        "discount__customer",
        "session_id",
        "billing_id",
    }
)
# JSON lists of such ids (Recurly invoices name their subscriptions in one).
ID_LISTS = frozenset({"subscription_ids"})
# JSON lists of objects with such an id under "id" (a Recurly subscription's add-ons: the
# add-on's id is its price_id, which its tiers join on).
OBJECT_LISTS = frozenset({"add_ons"})
PREFIX = "'c' || copy.i || '~'"
# Additive figures of the aggregate marts: k copies give k times the base's.
ADDITIVE = {
    "fct_repurchase_cohorts": (
        "cohort_episodes",
        "repurchasing_episodes",
        "first_repurchase_episodes",
        "repurchase_revenue",
        "first_repurchase_revenue",
        "cumulative_repurchase_revenue",
    )
}


def _copied_column(name: str, kind: str) -> str | None:
    """The expression copy `copy.i` gives column `name`, or None when it keeps the base's."""
    if kind != "VARCHAR":
        return None
    if name in ID_COLUMNS:
        return f'case when copy.i = 0 then "{name}" else {PREFIX} || "{name}" end'
    if name in ID_LISTS:
        items = f'from_json("{name}", \'["VARCHAR"]\')'
        prefixed = f"to_json(list_transform({items}, lambda x: {PREFIX} || x))"
        return f'case when copy.i = 0 then "{name}" else cast({prefixed} as varchar) end'
    if name in OBJECT_LISTS:
        items = f'from_json("{name}", \'["JSON"]\')'
        own_id = f"json_object('id', {PREFIX} || (a ->> 'id'))"
        prefixed = f"to_json(list_transform({items}, lambda a: json_merge_patch(a, {own_id})))"
        return f'case when copy.i = 0 then "{name}" else cast({prefixed} as varchar) end'
    return None


def named_columns(compiled: Path) -> frozenset[str]:
    """Every word of the SQL dbt compiled (its `target/compiled` folder): a column of a raw
    table that is none of them is read by no model."""
    words: set[str] = set()
    for sql in compiled.rglob("*.sql"):
        words.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql.read_text()))
    return frozenset(words)


def replicate(
    base: Path, target: Path, copies: int, keep: frozenset[str] | None = None
) -> dict[str, int]:
    """Write `target` with the raw tables of `base`, the per-customer ones `copies` times,
    with only the columns in `keep` if given (`named_columns`: the columns no model reads,
    such as invoice lines, cost disk and copying time, not query time, as DuckDB reads only
    the columns a query names; the copies check shows that leaving them out changes no
    mart). Returns the rows written per table."""
    if copies < 1:
        raise ValueError(f"copies must be 1 or more, got {copies}")
    target.unlink(missing_ok=True)
    rows: dict[str, int] = {}
    with duckdb.connect(str(target)) as con:
        con.execute("set enable_progress_bar = false")
        con.execute("set preserve_insertion_order = false")
        con.execute(f"attach '{base}' as base (read_only)")
        tables = con.sql(
            "select schema_name, table_name from duckdb_tables() where database_name = 'base'"
            f" and schema_name in {RAW_SCHEMAS} order by all"
        ).fetchall()
        for schema, table in tables:
            con.execute(f"create schema if not exists {schema}")
            source = f"base.{schema}.{table}"
            select = f"select * from {source}"
            if table in PER_CUSTOMER.get(schema, ()):
                columns = con.sql(f"from {source} limit 0")
                left_out = [c for c in columns.columns if keep is not None and c not in keep]
                changed = {
                    name: expr
                    for name, kind in zip(columns.columns, map(str, columns.types), strict=True)
                    if name not in left_out and (expr := _copied_column(name, kind))
                }
                replaced = ", ".join(f'{expr} as "{name}"' for name, expr in changed.items())
                exclude = ", ".join(f'"{c}"' for c in left_out)
                star = f"* {f'exclude ({exclude})' if left_out else ''} replace ({replaced})"
                select = f"select {star} from {source}, range({copies}) as copy(i)"
            con.execute(f"create table {schema}.{table} as {select}")
            rows[f"{schema}.{table}"] = con.sql(
                f"select count(*) from {schema}.{table}"
            ).fetchall()[0][0]
    return rows


def _unprefixed(column: str) -> str:
    return f"regexp_replace(\"{column}\", '^c[0-9]+~', '')"


def copies_check(
    con: duckdb.DuckDBPyConnection, base_marts: str, marts: tuple[str, ...], copies: int
) -> dict[str, list[int]]:
    """Per mart [rows here, rows expected, here EXCEPT ALL expected, expected EXCEPT ALL
    here]: the marts of `copies` copies against the base's (schema `base_marts` of an
    attached database). Row-level marts: ids unprefixed, each base row `copies` times;
    aggregate marts (ADDITIVE): the base's rows, additive figures times `copies`."""
    result = {}
    for mart in marts:
        relation = con.table(f"marts.{mart}")
        columns = relation.columns
        additive = ADDITIVE.get(mart, ())
        if additive:
            here = f"select * from marts.{mart}"
            scaled = ", ".join(
                f'"{c}" * {copies} as "{c}"' if c in additive else f'"{c}"' for c in columns
            )
            expected = f"select {scaled} from {base_marts}.{mart}"
        else:
            kinds = dict(zip(columns, map(str, relation.types), strict=True))
            plain = ", ".join(
                _unprefixed(c) if kinds[c] == "VARCHAR" else f'"{c}"' for c in columns
            )
            here = f"select {plain} from marts.{mart}"
            expected = f"select b.* from {base_marts}.{mart} as b, range({copies})"
        queries = (here, expected, f"{here} except all {expected}", f"{expected} except all {here}")
        result[mart] = [con.sql(f"select count(*) from ({q})").fetchall()[0][0] for q in queries]
    return result
