"""dbt marts at scale against the limit: the same logic as one hand-written DuckDB query.

Synthesizes the RAW tables the staging models read (raw_stripe, raw_recurly,
raw_chargebee, raw_exit_sessions, with the column names and types dlt lands from the real
APIs) directly in a temporary DuckDB file with SQL, in seconds: N subscriptions spread
over the three billing systems (40/30/30; customers with one or two subscriptions,
plans/prices/products/items, coupons, three invoices per started subscription, a syncs
row per system) and M exit sessions over ~0.4·M billing ids (subscription ids, customer
ids, Recurly account ids, unknown ids) with repeat visits. It does not go through the
sandbox APIs and the dlt sources: at 1M rows that path takes minutes
(bench_sandbox_listing.py measures it); this benchmark is about the models.

Then, on that file:
- `dbt seed` and `dbt parse`, untimed (the fx seed, and the manifest a deployment keeps,
  so that the timed commands parse partially);
- the hand-written query: ONE DuckDB statement (CTEs) from the raw tables and the fx seed
  to fct_exit_episodes (episodes by the exact 30-day rule as a recursive CTE, matching,
  status, outcome, revenue) and fct_repurchase_cohorts, written as one table;
- `dbt run --select +fct_exit_episodes +fct_repurchase_cohorts`: the same logic in dbt,
  alternating with the hand-written query (the machine's other load hits both alike);
  the ratio of the two is the headline;
- the hand-written rows against the dbt marts: counts, and EXCEPT ALL both ways;
- `dbt run` of every model, then `dbt build` (seed, models, data tests, unit tests);
- dbt's fixed cost: the same selected `dbt run` over 1,000 rows.

dbt is the venv's `dbt` CLI in a subprocess (as dagster-dbt runs it), with --target-path
and --log-path in a temp dir and RETENTION_DUCKDB_PATH at the temp file. Its wall time
includes process start and partial parsing; dbt's own elapsed time (run_results.json) is
printed beside it. cpu is user+sys time and peak the peak RSS of each child process.

Run: .venv/bin/python bench/bench_marts.py [--subscriptions N] [--sessions N] [--repeat N]
     [--no-build] [--no-fixed-cost] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT = ROOT / "dbt_project"
T_EPOCH = 1782777600  # 2026-06-30T00:00:00Z: every system's last sync, the validation time T
START_EPOCH = 1672531200  # 2023-01-01T00:00:00Z: earliest subscription start
DAY = 86400
WINDOW_DAYS = 30  # dbt_project.yml save_window_days

# Seven plans, the same in every system (as the sandbox scenario has them):
# (index, stripe price, chargebee item price, recurly plan, product, product name,
#  currency, amount in minor units, amount in major units, interval, interval_count,
#  recurly interval unit, recurly interval length)
PLANS = """
(values
    (0, 'price_basic_monthly_usd', 'Basic-Monthly-Usd', 'basic-monthly-usd', 'basic', 'Basic', 'usd', 1900, 19.0, 'month', 1, 'months', 1),
    (1, 'price_digest_weekly_usd', 'Digest-Weekly-Usd', 'digest-weekly-usd', 'digest', 'Digest', 'usd', 500, 5.0, 'week', 1, 'days', 7),
    (2, 'price_pro_monthly_eur', 'Pro-Monthly-Eur', 'pro-monthly-eur', 'pro', 'Pro', 'eur', 4500, 45.0, 'month', 1, 'months', 1),
    (3, 'price_pro_monthly_jpy', 'Pro-Monthly-Jpy', 'pro-monthly-jpy', 'pro', 'Pro', 'jpy', 4900, 4900.0, 'month', 1, 'months', 1),
    (4, 'price_pro_monthly_usd', 'Pro-Monthly-Usd', 'pro-monthly-usd', 'pro', 'Pro', 'usd', 4900, 49.0, 'month', 1, 'months', 1),
    (5, 'price_pro_yearly_usd', 'Pro-Yearly-Usd', 'pro-yearly-usd', 'pro', 'Pro', 'usd', 49000, 490.0, 'year', 1, 'months', 12),
    (6, 'price_team_quarterly_gbp', 'Team-Quarterly-Gbp', 'team-quarterly-gbp', 'team', 'Team', 'gbp', 12000, 120.0, 'month', 3, 'months', 3)
) as p(pidx, stripe_id, cb_id, recurly_code, product, product_name, currency, minor, major,
       "interval", interval_count, recurly_unit, recurly_length)
"""


def u(key: str, salt: str) -> str:
    """A deterministic uniform [0, 1) from a key and a salt."""
    return f"((hash({key}, '{salt}') % 1000003) / 1000003.0)"


def synthesize_sql(subscriptions: int, sessions: int) -> str:
    n_stripe = subscriptions * 4 // 10
    n_recurly = subscriptions * 3 // 10
    n_chargebee = subscriptions - n_stripe - n_recurly
    keys = max(1, sessions // 2)
    t, start = T_EPOCH, START_EPOCH
    return f"""
set timezone = 'UTC';
create schema raw_stripe; create schema raw_recurly; create schema raw_chargebee;
create schema raw_exit_sessions;

-- One lifecycle per subscription, in epoch seconds; every system renders it in its own
-- vocabulary below. Customer c = j*4//5: a quarter of the customers have two subscriptions.
create temp table life as
with base as (
    select sys, j, j * 4 // 5 as c, cast(hash(sys, j, 'plan') % 7 as integer) as pidx,
        case when {u("sys, j", "q")} < 0.1 then 2 else 1 end as quantity,
        {u("sys, j", "status")} as r, {u("sys, j", "x")} as x, {u("sys, j", "y")} as y
    from (
        select 'stripe' as sys, range as j from range({n_stripe})
        union all select 'recurly', range from range({n_recurly})
        union all select 'chargebee', range from range({n_chargebee})
    )
),
kinds as (
    select *,
        case
            when r < 0.55 then 'active' when r < 0.75 then 'ended'
            when r < 0.80 then 'non_renewing' when r < 0.84 then 'paused'
            when r < 0.87 then 'trialing' when r < 0.91 then 'past_due'
            when r < 0.93 then 'unpaid' when r < 0.95 then 'future' else 'active'
        end as kind
    from base
),
started as (
    select *,
        cast(case kind
            when 'trialing' then {t} - x * 14 * {DAY}
            when 'future' then {t} + {DAY} + x * 30 * {DAY}
            else {start} + x * ({t} - {start} - 20 * {DAY})
        end as bigint) as start_at
    from kinds
)
select *,
    cast(case kind
        when 'ended' then start_at + y * ({t} - start_at - 2 * {DAY})
        when 'non_renewing' then {t} - y * least(60 * {DAY}, {t} - start_at - {DAY})
    end as bigint) as cancel_at,
    cast(case kind
        when 'ended' then start_at + y * ({t} - start_at - 2 * {DAY}) + {DAY} + x * 20 * {DAY}
        when 'non_renewing' then {t} + {DAY} + y * 28 * {DAY}
    end as bigint) as end_at,
    case when kind = 'trialing' then start_at + 14 * {DAY} end as trial_end,
    cast(case when kind = 'future' then start_at + 30 * {DAY}
        else {t} + 1 + y * 29 * {DAY} end as bigint) as period_end
from started;

create temp table plans as select * from {PLANS};

-- Stripe --------------------------------------------------------------------------
create table raw_stripe.products as
select distinct 'prod_' || product as id, 'product' as object, true as active,
    {start} as created, false as livemode, product_name as name, 'service' as type, {start} as updated
from plans;
create table raw_stripe.prices as
select stripe_id as id, 'price' as object, true as active, 'per_unit' as billing_scheme,
    {start} as created, currency, false as livemode, 'prod_' || product as product,
    "interval" as recurring__interval, cast(interval_count as bigint) as recurring__interval_count,
    'licensed' as recurring__usage_type, 'unspecified' as tax_behavior, 'recurring' as type,
    cast(minor as bigint) as unit_amount, cast(minor as varchar) as unit_amount_decimal
from plans;
create table raw_stripe.coupons as
select * from (values
    ('SAVE20', 'coupon', {start}, 'repeating', 3, false, '20% off', 20.0, true),
    ('HALF1', 'coupon', {start}, 'once', null, false, 'Half off once', 50.0, true)
) as c(id, object, created, duration, duration_in_months, livemode, name, percent_off, valid);
create table raw_stripe.customers as
select 'cus_' || lpad(cast(c as varchar), 8, '0') as id, 'customer' as object,
    cast(0 as bigint) as balance, min(start_at) - 3600 as created, 'usd' as currency,
    false as delinquent, 'stripe' || c || '@example.com' as email, false as livemode,
    'Customer ' || c as name, '[]' as preferred_locales, 'none' as tax_exempt
from life where sys = 'stripe' group by c;
create table raw_stripe.subscriptions as
select 'sub_' || lpad(cast(j as varchar), 8, '0') as id, 'subscription' as object,
    cast(case when kind = 'non_renewing' then cancel_at + 30 * {DAY} end as bigint) as cancel_at,
    false as cancel_at_period_end,
    cast(case when kind in ('ended', 'non_renewing') then cancel_at end as bigint) as canceled_at,
    start_at - 60 as created, plan.currency,
    period_end as current_period_end, period_end - 30 * {DAY} as current_period_start,
    'cus_' || lpad(cast(c as varchar), 8, '0') as customer,
    cast(case when kind = 'ended' then end_at end as bigint) as ended_at,
    plan.stripe_id as plan__id, cast(plan.minor as bigint) as plan__amount,
    plan.currency as plan__currency, plan."interval" as plan__interval,
    cast(plan.interval_count as bigint) as plan__interval_count,
    'prod_' || plan.product as plan__product,
    cast(quantity as bigint) as quantity, start_at as start_date,
    case kind when 'ended' then 'canceled' when 'trialing' then 'trialing'
        when 'past_due' then 'past_due' when 'unpaid' then 'unpaid'
        when 'future' then 'incomplete' else 'active' end as status,
    case when kind = 'trialing' then trial_end end as trial_end,
    case when kind = 'trialing' then start_at end as trial_start,
    case when x < 0.05 then 'SAVE20' end as discount__coupon__id,
    case when kind = 'paused' then 'void' end as pause_collection__behavior,
    cast(case when kind = 'paused' then {t} + y * 60 * {DAY} end as bigint)
        as pause_collection__resumes_at
from life join plans as plan using (pidx) where sys = 'stripe';
create table raw_stripe.syncs as
select to_timestamp({t}) as synced_at, 'api' as clock, '1' as _dlt_load_id, 's' as _dlt_id;
create table raw_stripe.events (id varchar, object varchar, created bigint, type varchar,
    data__object_id varchar, data__object_type varchar, data__object varchar);

-- Recurly -------------------------------------------------------------------------
create table raw_recurly.plans as
select 'rp_' || recurly_code as id, 'plan' as object, recurly_code as code, product_name as name,
    'active' as state, 'fixed' as pricing_model,
    '[{{"currency":"' || upper(currency) || '","setup_fee":0.0,"unit_amount":' || major
        || ',"tax_inclusive":false}}]' as currencies,
    recurly_unit as interval_unit, cast(recurly_length as bigint) as interval_length,
    to_timestamp({start}) as created_at, to_timestamp({start}) as updated_at
from plans;
create table raw_recurly.coupons as
select * from (values
    ('rc1', 'coupon', 'save20', '20% off', 'redeemable', 'percent', 20, 'single_code', 'temporal', 'month', 3),
    ('rc2', 'coupon', 'half1', 'Half off', 'redeemable', 'percent', 50, 'single_code', 'single_use', null, null)
) as c(id, object, code, name, state, discount__type, discount__percent, coupon_type, duration,
       temporal_unit, temporal_amount);
create table raw_recurly.customers as
select 'ra' || lpad(cast(c as varchar), 10, '0') as id, 'account' as object,
    'acct-' || lpad(cast(c as varchar), 8, '0') as code, 'recurly' || c || '@example.com' as email,
    'First' || c as first_name, 'Last' as last_name, 'active' as state,
    to_timestamp(min(start_at) - 3600) as created_at, to_timestamp(min(start_at) - 3600) as updated_at
from life where sys = 'recurly' group by c;
create table raw_recurly.subscriptions as
select 'rs' || lpad(cast(j as varchar), 10, '0') as id, 'subscription' as object,
    'ra' || lpad(cast(c as varchar), 10, '0') as account__id,
    'acct-' || lpad(cast(c as varchar), 8, '0') as account__code,
    'rp_' || plan.recurly_code as plan__id, plan.recurly_code as plan__code,
    case kind when 'ended' then 'expired' when 'non_renewing' then 'canceled'
        when 'paused' then 'paused' when 'future' then 'future' else 'active' end as state,
    case when x < 0.05 then '[{{"coupon":{{"code":"save20"}}}}]' else '[]' end as coupon_redemptions,
    to_timestamp(period_end - 30 * {DAY}) as current_period_started_at,
    to_timestamp(period_end) as current_period_ends_at,
    case when kind = 'trialing' then to_timestamp(start_at) end as trial_started_at,
    case when kind = 'trialing' then to_timestamp(period_end + 1) end as trial_ends_at,
    upper(plan.currency) as currency, cast(plan.major as double) as unit_amount,
    cast(quantity as bigint) as quantity,
    to_timestamp(start_at - 60) as created_at, to_timestamp(start_at) as activated_at,
    to_timestamp(cancel_at) as canceled_at, to_timestamp(end_at) as expires_at,
    case when kind = 'paused' then to_timestamp({t} - y * 20 * {DAY}) end as paused_at,
    case when kind = 'paused' then to_timestamp({t} + y * 60 * {DAY}) end as resume_at
from life join plans as plan using (pidx) where sys = 'recurly';
create table raw_recurly.syncs as
select to_timestamp({t}) as synced_at, 'api' as clock, '1' as _dlt_load_id, 'r' as _dlt_id;

-- Chargebee -----------------------------------------------------------------------
create table raw_chargebee.items as
select distinct product as id, 'item' as object, product_name as name,
    product_name as external_name, 'active' as status, 'plan' as type, false as deleted
from plans;
create table raw_chargebee.item_prices as
select cb_id as id, 'item_price' as object, cb_id as name, cb_id as external_name,
    product as item_id, 'plan' as item_type, 'active' as status, 'flat_fee' as pricing_model,
    cast(minor as bigint) as price, upper(currency) as currency_code,
    cast(interval_count as bigint) as period, "interval" as period_unit, false as deleted
from plans;
create table raw_chargebee.coupons as
select * from (values
    ('SAVE20', 'coupon', '20% off', 'percentage', 20.0, 'limited_period', 'active', 3, 'month', 3, false),
    ('HALF1', 'coupon', 'Half off', 'percentage', 50.0, 'one_time', 'active', null, null, null, false)
) as c(id, object, name, discount_type, discount_percentage, duration_type, status, period,
       period_unit, duration_month, deleted);
create table raw_chargebee.customers as
select 'cb-cust-' || lpad(cast(c as varchar), 8, '0') as id, 'customer' as object,
    'First' || c as first_name, 'Last' as last_name, 'chargebee' || c || '@example.com' as email,
    min(start_at) - 3600 as created_at, false as deleted
from life where sys = 'chargebee' group by c;
create table raw_chargebee.subscriptions as
select 'cb-sub-' || lpad(cast(j as varchar), 8, '0') as id, 'subscription' as object,
    'cb-cust-' || lpad(cast(c as varchar), 8, '0') as customer_id,
    case kind when 'ended' then 'cancelled' when 'non_renewing' then 'non_renewing'
        when 'paused' then 'paused' when 'future' then 'future' when 'trialing' then 'in_trial'
        else 'active' end as status,
    upper(plan.currency) as currency_code, cast(plan.interval_count as bigint) as billing_period,
    plan."interval" as billing_period_unit,
    '[{{"item_price_id":"' || plan.cb_id || '","item_type":"plan","quantity":' || quantity
        || ',"unit_price":' || plan.minor || ',"amount":' || plan.minor * quantity
        || ',"free_quantity":0,"object":"subscription_item"}}]' as subscription_items,
    start_at - 60 as created_at,
    case when kind <> 'future' then start_at end as started_at,
    case when kind = 'future' then start_at end as start_date,
    case when kind = 'trialing' then start_at end as trial_start,
    trial_end, period_end - 30 * {DAY} as current_term_start, period_end as current_term_end,
    end_at as cancelled_at,
    case when kind = 'non_renewing' then cancel_at end as cancel_schedule_created_at,
    case when kind = 'paused' then cast({t} - y * 20 * {DAY} as bigint) end as pause_date,
    case when kind = 'paused' then cast({t} + y * 60 * {DAY} as bigint) end as resume_date,
    case when x < 0.05 then '[{{"coupon_id":"SAVE20"}}]' end as coupons,
    false as deleted
from life join plans as plan using (pidx) where sys = 'chargebee';
create table raw_chargebee.syncs as
select to_timestamp({t}) as synced_at, 'api' as clock, '1' as _dlt_load_id, 'c' as _dlt_id;

-- Invoices: three per subscription over its service so far; 95% paid, 3% void, 2% open.
create temp table inv as
select l.sys, l.j, l.c, k, plan.minor * l.quantity as minor, plan.major * l.quantity as major,
    plan.currency,
    cast(l.start_at + (k + {u("l.sys, l.j, k", "when")}) / 3
        * (least(coalesce(l.end_at, {t}), {t}) - l.start_at) as bigint) as created,
    {u("l.sys, l.j, k", "paid")} as p,
    cast({u("l.sys, l.j, k", "lag")} * 8 * 3600 as bigint) as lag,
    row_number() over (order by l.sys, l.j, k) as n
from life as l join plans as plan using (pidx), range(3) as r(k)
where l.start_at < {t};
create table raw_stripe.invoices as
select 'in_' || lpad(cast(n as varchar), 10, '0') as id, 'invoice' as object,
    'cus_' || lpad(cast(c as varchar), 8, '0') as customer,
    'sub_' || lpad(cast(j as varchar), 8, '0') as subscription,
    'sub_' || lpad(cast(j as varchar), 8, '0') as parent__subscription_details__subscription,
    currency, cast(minor as bigint) as total, cast(minor as bigint) as subtotal,
    case when p < 0.95 then 'paid' when p < 0.98 then 'void' else 'open' end as status,
    created, case when p < 0.95 then created + lag end as status_transitions__paid_at
from inv where sys = 'stripe';
create table raw_recurly.invoices as
select 'ri' || n as id, 'invoice' as object, 'charge' as type,
    case when p < 0.95 then 'paid' when p < 0.98 then 'voided' else 'pending' end as state,
    'ra' || lpad(cast(c as varchar), 10, '0') as account__id,
    'acct-' || lpad(cast(c as varchar), 8, '0') as account__code,
    '["rs' || lpad(cast(j as varchar), 10, '0') || '"]' as subscription_ids,
    cast(100000 + n as varchar) as number, upper(currency) as currency,
    cast(major as double) as total, to_timestamp(created) as created_at,
    case when p < 0.98 then to_timestamp(created + lag) end as closed_at
from inv where sys = 'recurly';
create table raw_chargebee.invoices as
select 'cb-inv-' || lpad(cast(n as varchar), 10, '0') as id, 'invoice' as object,
    'cb-cust-' || lpad(cast(c as varchar), 8, '0') as customer_id,
    'cb-sub-' || lpad(cast(j as varchar), 8, '0') as subscription_id,
    case when p < 0.95 then 'paid' when p < 0.98 then 'voided' else 'payment_due' end as status,
    created as date, upper(currency) as currency_code, cast(minor as bigint) as total,
    case when p < 0.95 then created + lag end as paid_at, false as deleted
from inv where sys = 'chargebee';

-- Exit sessions: {sessions} visits over {keys} billing ids, each id's visits within ~85
-- days of its own anchor (so episodes chain and split by the exact rule). 70% of the ids
-- are subscription ids, 25% customer ids (Recurly: half account codes, half account ids),
-- 5% ids no billing system knows.
create temp table targets as
select k,
    case when k % 10 < 4 then 'stripe' when k % 10 < 7 then 'recurly' else 'chargebee' end as sys,
    {u("k", "kind")} as kr,
    hash(k, 'j') % case when k % 10 < 4 then {max(n_stripe, 1)}
        when k % 10 < 7 then {max(n_recurly, 1)} else {max(n_chargebee, 1)} end as j,
    cast({t} - 480 * {DAY} + {u("k", "anchor")} * 390 * {DAY} as bigint) as anchor
from range({keys}) as r(k);
create table raw_exit_sessions.exit_sessions as
with v as (
    select n, hash(n, 'key') % {keys} as k, {u("n", "act")} as a, {u("n", "offer")} as o,
        {u("n", "page")} as pg,
        cast({u("n", "off")} * 85 * {DAY} as bigint) as offset_s,
        cast(60 + {u("n", "dur")} * 900 as bigint) as dur
    from range({sessions}) as r(n)
),
w as (
    select v.*, t.sys, t.kr, t.j, t.j * 4 // 5 as c, t.anchor,
        case when pg < 0.45 then 'page_a' when pg < 0.9 then 'page_b' else 'holdout' end as page
    from v join targets as t using (k)
)
select 'es_' || lpad(cast(n as varchar), 9, '0') as session_id, 'app_main' as app_id,
    sys as billing_system,
    case
        when kr >= 0.95 then 'unknown-' || k
        when kr < 0.70 then case sys when 'stripe' then 'sub_' || lpad(cast(j as varchar), 8, '0')
            when 'recurly' then 'rs' || lpad(cast(j as varchar), 10, '0')
            else 'cb-sub-' || lpad(cast(j as varchar), 8, '0') end
        else case sys when 'stripe' then 'cus_' || lpad(cast(c as varchar), 8, '0')
            when 'recurly' then case when kr < 0.825 then 'acct-' || lpad(cast(c as varchar), 8, '0')
                else 'ra' || lpad(cast(c as varchar), 10, '0') end
            else 'cb-cust-' || lpad(cast(c as varchar), 8, '0') end
    end as billing_id,
    sys || c || '@example.com' as email,
    to_timestamp(anchor + offset_s) as started_at,
    case when a < 0.30 then 'canceled' when a < 0.50 and page <> 'holdout' then 'offer_accepted'
        when a < 0.75 then 'deflected' end as action,
    case when a < 0.75 then to_timestamp(anchor + offset_s + dur) end as action_at,
    case when a >= 0.30 and a < 0.50 and page <> 'holdout'
        then ['pause_1m', 'discount_20', 'extend_14d', 'downgrade_basic', 'custom_call'][1 + cast(floor(o * 5) as integer)] end
        as offer_id,
    case when a >= 0.30 and a < 0.50 and page <> 'holdout'
        then ['pause', 'discount', 'extension', 'plan_change', 'custom'][1 + cast(floor(o * 5) as integer)] end
        as offer_type,
    page as page_id,
    case when a < 0.30 then ['too_expensive', 'not_using', 'missing_feature', 'other'][1 + cast(floor(o * 4) as integer)] end
        as cancel_reason,
    case when o < 0.3 then '{{"seats":' || cast(floor(o * 40) as integer) || '}}' end as custom,
    'bench.parquet' as _file, n as _line, n as _landed_seq
from w;
create table raw_exit_sessions.exit_sessions_quarantine (_file varchar, _line bigint,
    reason varchar, raw varchar, _landed_seq bigint, quarantined_at timestamp with time zone);
"""


def minor_to_major(amount: str, currency: str) -> str:
    """As macros/staging.sql: zero-decimal currencies unchanged, three-decimal ÷ 1000."""
    return f"""case
        when upper({currency}) in ('BIF', 'CLP', 'DJF', 'GNF', 'JPY', 'KMF', 'KRW', 'MGA',
                                   'PYG', 'RWF', 'UGX', 'VND', 'VUV', 'XAF', 'XOF', 'XPF')
            then cast({amount} as decimal(38, 10))
        when upper({currency}) in ('BHD', 'JOD', 'KWD', 'OMR', 'TND')
            then cast({amount} as decimal(38, 10)) / 1000
        else cast({amount} as decimal(38, 10)) / 100
    end"""


def month_offset(start: str, stop: str) -> str:
    return f"""cast((extract(year from {stop} at time zone 'UTC')
        - extract(year from {start} at time zone 'UTC')) * 12
        + extract(month from {stop} at time zone 'UTC')
        - extract(month from {start} at time zone 'UTC') as integer)"""


# The limit: fct_exit_episodes and fct_repurchase_cohorts from the raw tables (and the fx
# seed) in ONE statement, written as one table (kind = 'episode' | 'cohort').
HAND_QUERY = f"""
create or replace table bench.hand_marts as
with recursive
fx as (
    select upper(cast(currency as varchar)) as currency, cast(rate as decimal(38, 10)) as rate
    from reference.fx_rates
),
syncs as (
    select 'stripe' as billing_system, max(cast(synced_at as timestamptz)) as synced_at from raw_stripe.syncs
    union all select 'recurly', max(cast(synced_at as timestamptz)) from raw_recurly.syncs
    union all select 'chargebee', max(cast(synced_at as timestamptz)) from raw_chargebee.syncs
),
vt as (
    select billing_system,
        coalesce(synced_at, (select max(synced_at) from syncs), current_timestamp) as validated_at
    from syncs
),
plans as (
    select 'stripe' as billing_system, cast(id as varchar) as plan_id, upper(currency) as currency,
        {minor_to_major("unit_amount", "currency")} as unit_amount_local,
        cast(recurring__interval as varchar) as "interval",
        cast(recurring__interval_count as integer) as interval_count
    from raw_stripe.prices
    union all
    select 'recurly', cast(code as varchar),
        upper(json_extract_string(currencies, '$[0].currency')),
        cast(json_extract_string(currencies, '$[0].unit_amount') as decimal(38, 10)),
        case when interval_unit = 'months' and interval_length % 12 = 0 then 'year'
            when interval_unit = 'months' then 'month'
            when interval_unit = 'days' and interval_length % 7 = 0 then 'week' else 'day' end,
        cast(case when interval_unit = 'months' and interval_length % 12 = 0 then interval_length / 12
            when interval_unit = 'days' and interval_length % 7 = 0 then interval_length / 7
            else interval_length end as integer)
    from raw_recurly.plans
    union all
    select 'chargebee', cast(id as varchar), upper(currency_code),
        {minor_to_major("price", "currency_code")}, cast(period_unit as varchar), cast(period as integer)
    from raw_chargebee.item_prices where not coalesce(deleted, false)
),
subs_raw as (
    select 'stripe' as billing_system, cast(id as varchar) as subscription_id,
        cast(customer as varchar) as customer_id,
        case
            when status in ('canceled', 'incomplete_expired') or ended_at is not null then 'canceled'
            when cancel_at is not null or cancel_at_period_end then 'non_renewing'
            when pause_collection__behavior is not null or status = 'paused' then 'paused'
            when status = 'trialing' then 'trialing'
            when status in ('past_due', 'unpaid') then status
            when status = 'incomplete' then 'past_due' else 'active'
        end as status,
        cast(plan__id as varchar) as plan_id, cast(quantity as integer) as quantity,
        upper(plan__currency) as currency,
        {minor_to_major("plan__amount", "plan__currency")} as unit_amount_local,
        cast(plan__interval as varchar) as "interval",
        cast(plan__interval_count as integer) as interval_count,
        to_timestamp(cast(start_date as double)) as activated_at,
        to_timestamp(cast(canceled_at as double)) as canceled_at,
        to_timestamp(cast(coalesce(ended_at, cancel_at,
            case when cancel_at_period_end then current_period_end end) as double)) as ended_at
    from raw_stripe.subscriptions
    union all
    select 'recurly', cast(id as varchar), cast(account__code as varchar),
        case when state in ('expired', 'failed') then 'canceled' when state = 'future' then 'future'
            when state = 'canceled' then 'non_renewing' when state = 'paused' then 'paused'
            when trial_ends_at is not null and trial_ends_at >= current_period_ends_at then 'trialing'
            else 'active' end,
        cast(plan__code as varchar), cast(quantity as integer), upper(currency),
        cast(unit_amount as decimal(38, 10)), null, null,
        cast(activated_at as timestamptz), cast(canceled_at as timestamptz),
        cast(expires_at as timestamptz)
    from raw_recurly.subscriptions
    union all
    select 'chargebee', cast(id as varchar), cast(customer_id as varchar),
        case status when 'in_trial' then 'trialing' when 'cancelled' then 'canceled'
            when 'non_renewing' then 'non_renewing' when 'paused' then 'paused'
            when 'future' then 'future' else 'active' end,
        cast(json_extract_string(subscription_items, '$[0].item_price_id') as varchar),
        cast(json_extract_string(subscription_items, '$[0].quantity') as integer),
        upper(currency_code),
        {minor_to_major("json_extract_string(subscription_items, '$[0].unit_price')", "currency_code")},
        cast(billing_period_unit as varchar), cast(billing_period as integer),
        to_timestamp(cast(coalesce(started_at, start_date) as double)),
        to_timestamp(cast(coalesce(cancel_schedule_created_at,
            case when status = 'cancelled' then cancelled_at end) as double)),
        to_timestamp(cast(cancelled_at as double))
    from raw_chargebee.subscriptions where not coalesce(deleted, false)
),
subs as materialized (
    select s.billing_system, s.subscription_id, s.customer_id, s.status, s.activated_at,
        s.canceled_at, s.ended_at,
        cast(cast(cast(coalesce(s.unit_amount_local, p.unit_amount_local) as decimal(38, 10))
            * s.quantity
            * case coalesce(s."interval", p."interval")
                when 'month' then cast(1 as decimal(38, 10))
                when 'year' then cast(1 as decimal(38, 10)) / 12
                when 'week' then cast(52 as decimal(38, 10)) / 12
                when 'day' then cast(365 as decimal(38, 10)) / 12 end
            / coalesce(s.interval_count, p.interval_count) as decimal(38, 10)) * fx.rate
        as decimal(38, 10)) as mrr
    from subs_raw as s
    left join plans as p on p.billing_system = s.billing_system and p.plan_id = s.plan_id
    left join fx on fx.currency = coalesce(s.currency, p.currency)
),
alt_ids as (
    select 'recurly' as billing_system, cast(id as varchar) as lookup_id,
        cast(code as varchar) as customer_id
    from raw_recurly.customers where id is not null
),
sessions as (
    select cast(session_id as varchar) as session_id, cast(billing_system as varchar) as billing_system,
        cast(billing_id as varchar) as billing_id, cast(started_at as timestamptz) as started_at,
        cast(action as varchar) as action, cast(action_at as timestamptz) as action_at,
        cast(offer_id as varchar) as offer_id, cast(offer_type as varchar) as offer_type,
        cast(page_id as varchar) as page_id
    from raw_exit_sessions.exit_sessions
),
ordered as (
    select session_id, billing_system, billing_id, started_at,
        row_number() over (partition by billing_system, billing_id order by started_at, session_id) as rn
    from sessions
),
walk as (
    select billing_system, billing_id, rn, session_id as episode_id, started_at as episode_start,
        session_id
    from ordered where rn = 1
    union all
    select o.billing_system, o.billing_id, o.rn,
        case when o.started_at >= w.episode_start + to_hours({WINDOW_DAYS * 24}) then o.session_id
            else w.episode_id end,
        case when o.started_at >= w.episode_start + to_hours({WINDOW_DAYS * 24}) then o.started_at
            else w.episode_start end,
        o.session_id
    from walk as w join ordered as o
        on o.billing_system = w.billing_system and o.billing_id = w.billing_id and o.rn = w.rn + 1
),
episodes_raw as (
    select w.episode_id, min(s.billing_system) as billing_system, min(s.billing_id) as billing_id,
        min(w.episode_start) as first_landed_at, count(*) as session_count,
        min(case when s.action = 'canceled' then s.action_at end) as canceled_at,
        bool_or(s.action = 'offer_accepted') as accepted_offer,
        bool_or(s.action = 'deflected') as deflected,
        min(case when s.session_id = w.episode_id then s.page_id end) as page_id,
        arg_max({{'offer_id': s.offer_id, 'offer_type': s.offer_type}},
            {{'a': s.action_at, 's': s.started_at, 'i': s.session_id}})
            filter (where s.action = 'offer_accepted') as offer
    from walk as w join sessions as s using (session_id)
    group by w.episode_id
),
episodes as materialized (
    select e.episode_id, e.billing_system, e.billing_id, e.first_landed_at,
        e.first_landed_at + to_hours({WINDOW_DAYS * 24}) as save_event_at, e.session_count,
        case when e.canceled_at is not null then 'canceled'
            when e.first_landed_at + to_hours({WINDOW_DAYS * 24}) > t.validated_at then 'watch_list'
            else 'saved' end as page_outcome,
        case when e.canceled_at is not null then null when e.accepted_offer then 'offer'
            when e.deflected then 'deflect' else 'passive' end as save_type,
        case when e.canceled_at is not null then e.canceled_at
            when e.first_landed_at + to_hours({WINDOW_DAYS * 24}) > t.validated_at then null
            else e.first_landed_at + to_hours({WINDOW_DAYS * 24}) end as outcome_at,
        e.offer.offer_id as offer_id, e.offer.offer_type as offer_type, e.page_id, t.validated_at
    from episodes_raw as e join vt as t using (billing_system)
),
by_subscription as (
    select e.episode_id, s.subscription_id, s.customer_id, s.status, s.activated_at,
        s.canceled_at, s.ended_at, s.mrr
    from episodes as e
    join subs as s on s.billing_system = e.billing_system and s.subscription_id = e.billing_id
),
by_customer as (
    select e.episode_id, s.subscription_id, s.customer_id, s.status, s.activated_at,
        s.canceled_at, s.ended_at, s.mrr
    from (
        -- a customer's own id is on its subscriptions; other ids by the customers table
        select episode_id, billing_system, billing_id as customer_id, first_landed_at
        from episodes
        union all
        select e.episode_id, e.billing_system, a.customer_id, e.first_landed_at
        from episodes as e
        join alt_ids as a on a.billing_system = e.billing_system and a.lookup_id = e.billing_id
    ) as e
    join subs as s on s.billing_system = e.billing_system and s.customer_id = e.customer_id
    anti join by_subscription as b on b.episode_id = e.episode_id
    qualify row_number() over (
        partition by e.episode_id
        order by
            case when s.activated_at <= e.first_landed_at
                    and (s.ended_at is null or s.ended_at > e.first_landed_at) then 1
                when s.activated_at <= e.first_landed_at then 2 else 3 end,
            case when s.activated_at <= e.first_landed_at
                    and (s.ended_at is null or s.ended_at > e.first_landed_at) then s.mrr end
                desc nulls last,
            case when s.activated_at <= e.first_landed_at then s.activated_at end desc nulls last,
            case when s.activated_at > e.first_landed_at then s.activated_at end asc nulls last,
            s.subscription_id) = 1
),
matched as (
    select * from by_subscription union all select * from by_customer
),
validated as materialized (
    select e.*, m.subscription_id, m.customer_id, m.mrr,
        case
            when m.subscription_id is null then 'no_match'
            when m.ended_at <= e.first_landed_at then 'expired_pre_session'
            when m.canceled_at < e.first_landed_at then 'canceled_pre_session'
            when e.page_outcome = 'canceled' then 'valid_cancel'
            when m.activated_at > e.first_landed_at then 'activated_post_session'
            when m.canceled_at >= e.first_landed_at and m.canceled_at
                <= case when e.page_outcome = 'saved' then e.save_event_at else e.validated_at end
                then 'invalid_save'
            when m.ended_at > e.first_landed_at and m.ended_at
                <= case when e.page_outcome = 'saved' then e.save_event_at else e.validated_at end
                then 'invalid_save'
            when m.status = 'unpaid' then 'invalid_save'
            else 'valid_save'
        end as validation_status
    from episodes as e left join matched as m using (episode_id)
),
fct_exit_episodes as (
    select episode_id, billing_system, billing_id, first_landed_at, save_event_at,
        cast(session_count as integer) as session_count, page_outcome, save_type, outcome_at,
        offer_id, offer_type, page_id, subscription_id, customer_id, validation_status,
        validated_outcome, mrr,
        cast(case when validated_outcome = 'saved' then mrr else 0 end as decimal(38, 10)) as saved_mrr,
        cast(case when validated_outcome = 'canceled' and subscription_id is not null then mrr else 0 end
            as decimal(38, 10)) as lost_mrr,
        validated_at
    from (
        select *,
            case
                when validation_status = 'no_match'
                    then case when page_outcome = 'canceled' then 'canceled' else 'unknown' end
                when validation_status in ('expired_pre_session', 'activated_post_session') then 'unknown'
                when validation_status in ('canceled_pre_session', 'invalid_save', 'valid_cancel')
                    then 'canceled'
                when page_outcome = 'watch_list' then 'pending'
                else 'saved'
            end as validated_outcome
        from validated
    )
),
paid_invoices as (
    select 'stripe' as billing_system, cast(id as varchar) as invoice_id,
        cast(customer as varchar) as customer_id, upper(currency) as currency,
        {minor_to_major("total", "currency")} as total_local,
        to_timestamp(cast(status_transitions__paid_at as double)) as paid_at
    from raw_stripe.invoices where status = 'paid'
    union all
    select 'recurly', cast(number as varchar), cast(account__code as varchar), upper(currency),
        cast(total as decimal(38, 10)), cast(closed_at as timestamptz)
    from raw_recurly.invoices where state = 'paid'
    union all
    select 'chargebee', cast(id as varchar), cast(customer_id as varchar), upper(currency_code),
        {minor_to_major("total", "currency_code")}, to_timestamp(cast(paid_at as double))
    from raw_chargebee.invoices where status = 'paid' and not coalesce(deleted, false)
),
cohort_episodes as materialized (
    select episode_id, billing_system, customer_id, first_landed_at,
        cast(date_trunc('month', first_landed_at at time zone 'UTC') as date) as cohort_month,
        page_outcome, validated_outcome, save_type, offer_type, page_id
    from fct_exit_episodes
),
paid as (
    select e.episode_id, cast(i.total_local * fx.rate as decimal(38, 10)) as total,
        {month_offset("e.first_landed_at", "i.paid_at")} as month_offset,
        row_number() over (partition by e.episode_id order by i.paid_at, i.invoice_id) = 1 as is_first
    from cohort_episodes as e
    join paid_invoices as i
        on i.billing_system = e.billing_system and i.customer_id = e.customer_id
        and i.paid_at >= e.first_landed_at
    left join fx on fx.currency = i.currency
    where i.paid_at is not null
),
per_episode as (
    select episode_id, month_offset, sum(total) as revenue, bool_or(is_first) as first_here,
        sum(case when is_first then total else 0 end) as first_revenue
    from paid group by episode_id, month_offset
),
cells as (
    select e.cohort_month, e.page_outcome, e.validated_outcome, e.save_type, e.offer_type,
        e.page_id, p.month_offset, count(*) as repurchasing_episodes,
        count(*) filter (where p.first_here) as first_repurchase_episodes,
        sum(p.revenue) as repurchase_revenue, sum(p.first_revenue) as first_repurchase_revenue
    from per_episode as p join cohort_episodes as e using (episode_id)
    group by all
),
groups as (
    select cohort_month, page_outcome, validated_outcome, save_type, offer_type, page_id,
        count(*) as cohort_episodes,
        max({month_offset("first_landed_at", "(select max(validated_at) from vt)")}) as last_offset
    from cohort_episodes group by all
),
dense as (
    select g.cohort_month, g.page_outcome, g.validated_outcome, g.save_type, g.offer_type,
        g.page_id, cast(o.month_offset as integer) as month_offset,
        cast(g.cohort_episodes as integer) as cohort_episodes,
        cast(coalesce(c.repurchasing_episodes, 0) as integer) as repurchasing_episodes,
        cast(coalesce(c.first_repurchase_episodes, 0) as integer) as first_repurchase_episodes,
        cast(coalesce(c.repurchase_revenue, 0) as decimal(38, 10)) as repurchase_revenue,
        cast(coalesce(c.first_repurchase_revenue, 0) as decimal(38, 10)) as first_repurchase_revenue
    from groups as g
    join range(0, (select max(last_offset) from groups) + 1) as o(month_offset)
        on o.month_offset <= g.last_offset
    left join cells as c
        on c.cohort_month = g.cohort_month and c.month_offset = o.month_offset
        and c.page_outcome is not distinct from g.page_outcome
        and c.validated_outcome is not distinct from g.validated_outcome
        and c.save_type is not distinct from g.save_type
        and c.offer_type is not distinct from g.offer_type
        and c.page_id is not distinct from g.page_id
),
fct_repurchase_cohorts as (
    select *, cast(sum(repurchase_revenue) over (
            partition by cohort_month, page_outcome, validated_outcome, save_type, offer_type, page_id
            order by month_offset rows between unbounded preceding and current row)
        as decimal(38, 10)) as cumulative_repurchase_revenue
    from dense
)
select 'episode' as kind, * from fct_exit_episodes
union all by name
select 'cohort' as kind, * from fct_repurchase_cohorts
"""

EPISODE_COLUMNS = (
    "episode_id, billing_system, billing_id, first_landed_at, save_event_at, session_count, "
    "page_outcome, save_type, outcome_at, offer_id, offer_type, page_id, subscription_id, "
    "customer_id, validation_status, validated_outcome, mrr, saved_mrr, lost_mrr, validated_at"
)
COHORT_COLUMNS = (
    "cohort_month, page_outcome, validated_outcome, save_type, offer_type, page_id, month_offset, "
    "cohort_episodes, repurchasing_episodes, first_repurchase_episodes, repurchase_revenue, "
    "first_repurchase_revenue, cumulative_repurchase_revenue"
)


def run_child(argv: list[str], env: dict[str, str], log: Path) -> dict:
    """Run a process with stdout/stderr to `log`: wall and CPU seconds, peak RSS, exit code."""
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    return {
        "wall": time.perf_counter() - started,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak": usage.ru_maxrss / 1024,
        "code": os.waitstatus_to_exitcode(status),
    }


class Dbt:
    """The venv's dbt CLI on one DuckDB file, state (target/, logs/) in a temp dir."""

    def __init__(self, database: Path, tmp: Path, project: Path) -> None:
        self.tmp = tmp
        self.project = project
        self.exe = str(Path(sys.executable).with_name("dbt"))
        self.env = {
            **os.environ,
            "RETENTION_DUCKDB_PATH": str(database),
            "RETENTION_DBT_TARGET": "duckdb",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        self.calls = 0

    def __call__(self, *args: str, check: bool = True) -> dict:
        self.calls += 1
        log = self.tmp / f"dbt_{self.calls}_{args[0]}.log"
        argv = [self.exe, "--no-use-colors", *args, "--project-dir", str(self.project)]
        argv += ["--profiles-dir", str(self.project), "--target-path", str(self.tmp / "target")]
        argv += ["--log-path", str(self.tmp / "logs")]
        result = run_child(argv, self.env, log)
        if result["code"] != 0 and check:
            sys.exit(f"dbt {' '.join(args)} failed:\n{log.read_text()[-4000:]}")
        result |= {"elapsed": None, "nodes": [], "failed": []}
        if args[0] in ("run", "build"):
            doc = json.loads((self.tmp / "target" / "run_results.json").read_text())
            result["elapsed"] = doc["elapsed_time"]
            result["nodes"] = [
                (r["unique_id"].split(".", 2)[-1], r["execution_time"]) for r in doc["results"]
            ]
            result["failed"] = [
                r["unique_id"] for r in doc["results"] if r["status"] in ("error", "fail")
            ]
        return result


RAW_TABLES = [
    f"raw_{system}.{table}"
    for system, tables in (
        ("stripe", ("subscriptions", "customers", "invoices")),
        ("recurly", ("subscriptions", "customers", "invoices")),
        ("chargebee", ("subscriptions", "customers", "invoices")),
        ("exit_sessions", ("exit_sessions",)),
    )
    for table in tables
]
MART_TABLES = [
    f"marts.{t}"
    for t in (
        "fct_exit_sessions",
        "fct_exit_episodes",
        "fct_repurchase_cohorts",
        "dim_subscriptions",
        "dim_subscriber_profiles",
        "rpt_retention_summary",
    )
]
SELECTED = ("+fct_exit_episodes", "+fct_repurchase_cohorts")


# DuckDB work runs in child processes (`--child TASK DATABASE ...`), one JSON line out:
# the parent stays small, so each child's peak RSS is its own (a child starts from the
# parent's memory until it execs).


def count_rows(con, tables: list[str]) -> dict[str, int]:
    return {t: con.sql(f"select count(*) from {t}").fetchall()[0][0] for t in tables}


def child_synthesize(con, subscriptions: str, sessions: str) -> dict:
    started = time.perf_counter()
    con.execute(synthesize_sql(int(subscriptions), int(sessions)))
    con.execute("checkpoint")
    took = time.perf_counter() - started
    rows = count_rows(con, RAW_TABLES)
    rows["distinct billing ids in sessions"] = con.sql(
        "select count(distinct (billing_system, billing_id)) from raw_exit_sessions.exit_sessions"
    ).fetchall()[0][0]
    return {"seconds": took, "rows": rows}


def child_hand(con) -> dict:
    con.execute("create schema if not exists bench")
    started, cpu = time.perf_counter(), time.process_time()
    con.execute(HAND_QUERY)
    return {"seconds": time.perf_counter() - started, "statement_cpu": time.process_time() - cpu}


def child_compare(con) -> dict:
    """Per mart: [dbt rows, hand rows, dbt EXCEPT ALL hand, hand EXCEPT ALL dbt]."""
    out = {}
    for kind, table, columns in (
        ("episode", "fct_exit_episodes", EPISODE_COLUMNS),
        ("cohort", "fct_repurchase_cohorts", COHORT_COLUMNS),
    ):
        dbt_rows = f"select {columns} from marts.{table}"
        hand_rows = f"select {columns} from bench.hand_marts where kind = '{kind}'"
        out[table] = [
            con.sql(f"select count(*) from ({q})").fetchall()[0][0]
            for q in (
                dbt_rows,
                hand_rows,
                f"{dbt_rows} except all {hand_rows}",
                f"{hand_rows} except all {dbt_rows}",
            )
        ]
    return out


def child_counts(con) -> dict:
    return count_rows(con, MART_TABLES)


CHILD_TASKS = {
    "synthesize": child_synthesize,
    "hand": child_hand,
    "compare": child_compare,
    "counts": child_counts,
}


def child_main(task: str, database: str, *rest: str) -> None:
    import duckdb

    with duckdb.connect(database) as con:
        con.execute("set enable_progress_bar = false")
        result = CHILD_TASKS[task](con, *rest)
    print(json.dumps(result))


def child(task: str, database: Path, log_dir: Path, *rest: object) -> dict:
    """Run a child task; its JSON result with wall/cpu/peak of the process."""
    log = log_dir / f"{task}.log"
    argv = [sys.executable, __file__, "--child", task, str(database), *map(str, rest)]
    result = run_child(argv, dict(os.environ), log)
    if result["code"] != 0:
        sys.exit(f"{task} failed:\n{log.read_text()[-4000:]}")
    return result | {"result": json.loads(log.read_text().splitlines()[-1])}


def line(label: str, runs: list[dict], key: str = "wall", peak: bool = True) -> str:
    """`label  best  [every run]  cpu  peak` for a list of timed runs."""
    best = min(runs, key=lambda r: r[key])
    every = ", ".join(f"{r[key]:.2f}" for r in runs)
    text = f"  {label:<44} {best[key]:7.2f}  [{every}]"
    if peak:
        text += f"  cpu {best['cpu']:6.2f}  peak {best['peak']:,.0f} MiB"
    return text


def report(rows, agreement, hand, selected, everything, build, fixed) -> None:
    print("\nrows")
    for table, n in rows.items():
        print(f"  {table:<36} {n:>12,}")

    print("\nagreement of the hand-written query with dbt (rows dbt / hand, EXCEPT ALL each way)")
    agree = True
    for table, (nd, nh, d_h, h_d) in agreement.items():
        ok = nd == nh and d_h == 0 and h_d == 0
        agree &= ok
        verdict = "same" if ok else "DIFFERENT"
        print(f"  {table:<24} {nd:>10,} / {nh:<10,} {d_h:>7,} {h_d:>7,}  {verdict}")
    print(f"  => {'the same rows' if agree else 'NOT the same rows: the ratio is not fair'}")

    print(f"\nseconds, best of {len(hand)} [every run]; cpu = user+sys of that process")
    print(line("hand-written query (the one statement)", hand, "seconds", peak=False))
    print(line("  its process (start, connect, statement)", hand))
    print(f"  dbt run --select {' '.join(SELECTED)}")
    print(line("  wall (process start, partial parse, run)", selected))
    print(line("  dbt's own elapsed (run_results.json)", selected, "elapsed", peak=False))
    print("  dbt run (every model)")
    print(line("  wall", everything))
    print(line("  dbt's own elapsed", everything, "elapsed", peak=False))
    if build:
        print("  dbt build (seed, every model, data tests and unit tests)")
        print(line("  wall", [build]))
        print(line("  dbt's own elapsed", [build], "elapsed", peak=False))
        for node in build["failed"]:
            print(f"    FAILED: {node}")
    if fixed:
        print("  dbt's fixed cost: the same dbt run --select over 1,000 rows")
        print(line("  wall", fixed))
        print(line("  dbt's own elapsed", fixed, "elapsed", peak=False))

    h = min(r["seconds"] for r in hand)
    s_wall = min(r["wall"] for r in selected)
    s_elapsed = min(r["elapsed"] for r in selected)
    a_wall = min(r["wall"] for r in everything)
    print("\nratio dbt / hand-written query (goal: within 1.5x)")
    print(f"  dbt run of the same two marts, wall          {s_wall / h:6.2f}x")
    print(f"  dbt run of the same two marts, dbt elapsed   {s_elapsed / h:6.2f}x")
    print(f"  dbt run of every model, wall                 {a_wall / h:6.2f}x")
    h_cpu = min(r["cpu"] for r in hand)
    s_cpu = min(r["cpu"] for r in selected)
    print(f"  the same two marts, cpu (processes)          {s_cpu / h_cpu:6.2f}x")
    if fixed:
        f_wall = min(r["wall"] for r in fixed)
        f_cpu = min(r["cpu"] for r in fixed)
        print(f"  the same two marts, wall less the fixed cost {(s_wall - f_wall) / h:6.2f}x")
        print(f"  the same two marts, cpu less the fixed cost  {(s_cpu - f_cpu) / h_cpu:6.2f}x")

    nodes = sorted(min(selected, key=lambda r: r["wall"])["nodes"], key=lambda n: -n[1])
    total = sum(t for _, t in nodes)
    print(f"\nslowest models of the best selected run ({len(nodes)} models, {total:.2f} s summed)")
    for name, took in nodes[:10]:
        print(f"  {name:<52} {took:6.2f}")


def fixed_cost(tmp: Path, project: Path, repeat: int) -> list[dict]:
    """The same selected `dbt run` over 1,000 subscriptions and sessions: what dbt costs
    whatever the rows (process start, parsing, per-model work)."""
    small = tmp / "fixed_cost"
    small.mkdir(exist_ok=True)
    database = small / "warehouse.duckdb"
    database.unlink(missing_ok=True)
    child("synthesize", database, small, 1000, 1000)
    dbt = Dbt(database, small, project)
    dbt("seed")
    dbt("parse")
    return [dbt("run", "--select", *SELECTED) for _ in range(repeat)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each (best counts)")
    parser.add_argument("--no-build", action="store_true", help="skip `dbt build` with tests")
    parser.add_argument(
        "--no-fixed-cost", action="store_true", help="skip the same dbt run over 1,000 rows"
    )
    parser.add_argument("--project-dir", type=Path, default=DBT_PROJECT, help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=Path, help="keep the warehouse and dbt state in this dir")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(*args.child)
        return

    with tempfile.TemporaryDirectory(prefix="bench_marts_") as scratch:
        tmp = args.keep or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        database = tmp / "warehouse.duckdb"
        database.unlink(missing_ok=True)
        print(f"bench_marts: {args.subscriptions:,} subscriptions, {args.sessions:,} exit sessions")
        synthesized = child("synthesize", database, tmp, args.subscriptions, args.sessions)
        print(f"synthesized the raw tables in {synthesized['result']['seconds']:.1f} s")

        project = args.project_dir.resolve()
        dbt = Dbt(database, tmp, project)
        started = time.perf_counter()
        dbt("seed")
        dbt("parse")
        print(f"dbt seed + parse (untimed preparation) in {time.perf_counter() - started:.1f} s")

        # Interleaved, so that load from elsewhere on the machine hits both alike.
        hand, selected = [], []
        for _ in range(args.repeat):
            run = child("hand", database, tmp)
            hand.append(run | run["result"])
            selected.append(dbt("run", "--select", *SELECTED))
        agreement = child("compare", database, tmp)["result"]
        everything = [dbt("run") for _ in range(args.repeat)]
        build = None if args.no_build else dbt("build", check=False)
        rows = synthesized["result"]["rows"] | child("counts", database, tmp)["result"]
        fixed = None if args.no_fixed_cost else fixed_cost(tmp, project, args.repeat)
        report(rows, agreement, hand, selected, everything, build, fixed)


if __name__ == "__main__":
    main()
