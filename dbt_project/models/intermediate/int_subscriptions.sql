-- One conformed subscription model across the three billing systems, with its plan,
-- product and MRR (validation.md §1): unit amount × quantity × months factor
-- (month 1, year 1/12, week 52/12, day 365/12) ÷ interval_count, in the plan's currency
-- and in the reporting currency.
with subscriptions as (
    {% for system in ['stripe', 'recurly', 'chargebee'] %}
    select * from {{ ref('stg_' ~ system ~ '__subscriptions') }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

plans as (
    select * from {{ ref('int_plans') }}
),

priced as (
    select
        s.billing_system,
        s.subscription_id,
        s.customer_id,
        s.status,
        s.plan_id,
        p.product_id,
        p.product_name,
        coalesce(s.currency, p.currency) as currency,
        coalesce(s.unit_amount_local, p.unit_amount_local) as unit_amount_local,
        s.quantity,
        coalesce(s."interval", p."interval") as "interval",
        coalesce(s.interval_count, p.interval_count) as interval_count,
        s.created_at,
        s.activated_at,
        s.trial_start,
        s.trial_end,
        s.current_period_start,
        s.current_period_end,
        s.canceled_at,
        s.ended_at,
        s.paused_at,
        s.resumes_at,
        s.coupon_id
    from subscriptions as s
    left join plans as p
        on p.billing_system = s.billing_system and p.plan_id = s.plan_id
),

with_mrr as (
    select
        priced.*,
        cast(
            cast(unit_amount_local as decimal(38, 10)) * quantity
            * case "interval"
                when 'month' then cast(1 as decimal(38, 10))
                when 'year' then cast(1 as decimal(38, 10)) / 12
                when 'week' then cast(52 as decimal(38, 10)) / 12
                when 'day' then cast(365 as decimal(38, 10)) / 12
            end
            / interval_count
        as decimal(38, 10)) as mrr_local
    from priced
)

select
    with_mrr.*,
    cast(with_mrr.mrr_local * fx.rate as decimal(38, 10)) as mrr
from with_mrr
left join {{ ref('int_fx_rates') }} as fx on fx.currency = with_mrr.currency
