-- One conformed subscription model across the three billing systems, with its plan,
-- product and MRR (validation.md §1). The plan, quantity, unit amount and interval are
-- those of the plan item (int_subscription_items.is_plan); the MRR counts every licensed
-- recurring item (plan and add-ons; never charges or metered usage): their amounts per
-- billing period × months factor (month 1, year 1/12, week 52/12, day 365/12) ÷
-- interval_count, in the subscription's currency and in the reporting currency. Deleted
-- subscriptions and those of deleted customers stay, flagged (`is_deleted`,
-- `customer_is_deleted`).
with subscriptions as (
    {% for system in billing_systems() %}
    select
        billing_system, subscription_id, customer_id, status, currency, created_at,
        activated_at, trial_start, trial_end, current_period_start, current_period_end,
        canceled_at, ended_at, paused_at, resumes_at, coupon_id, is_deleted
    from {{ ref('stg_' ~ system ~ '__subscriptions') }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

items as (
    select * from {{ ref('int_subscription_items') }}
),

recurring as (
    select
        billing_system,
        subscription_id,
        sum(amount_local) as period_amount_local
    from items
    where item_type in ('plan', 'addon') and usage_type = 'licensed'
    group by billing_system, subscription_id
),

priced as (
    select
        s.billing_system,
        s.subscription_id,
        s.customer_id,
        s.status,
        plan_item.price_id as plan_id,
        plan_item.product_id,
        p.product_name,
        coalesce(s.currency, plan_item.currency) as currency,
        plan_item.unit_amount_local,
        plan_item.quantity,
        plan_item.{{ adapter.quote('interval') }},
        plan_item.interval_count,
        recurring.period_amount_local,
        s.created_at,
        s.activated_at,
        s.trial_start,
        s.trial_end,
        -- A subscription that has not started has no current period (Chargebee sends none;
        -- Recurly shows the first one): null on every system.
        case when s.status <> 'future' then s.current_period_start end as current_period_start,
        case when s.status <> 'future' then s.current_period_end end as current_period_end,
        s.canceled_at,
        s.ended_at,
        s.paused_at,
        s.resumes_at,
        s.coupon_id,
        s.is_deleted,
        coalesce(c.is_deleted, false) as customer_is_deleted
    from subscriptions as s
    left join items as plan_item
        on plan_item.billing_system = s.billing_system
        and plan_item.subscription_id = s.subscription_id
        and plan_item.is_plan
    left join recurring
        on recurring.billing_system = s.billing_system and recurring.subscription_id = s.subscription_id
    left join {{ ref('int_plans') }} as p
        on p.billing_system = s.billing_system and p.plan_id = plan_item.price_id
    left join {{ ref('int_customers') }} as c
        on c.billing_system = s.billing_system and c.customer_id = s.customer_id
),

-- MRR = period amount × months numerator × fx rate ÷ (months denominator × interval_count):
-- multiplied exactly first, divided once (macros/walk.sql), so every engine gives the same
-- digits. The months factor as a fraction: month 1/1, year 1/12, week 52/12, day 365/12.
{%- set interval = adapter.quote('interval') %}
{%- set months_numerator %}case {{ interval }} when 'month' then 1 when 'year' then 1 when 'week' then 52 when 'day' then 365 end{% endset %}
{%- set months_denominator %}(case {{ interval }} when 'month' then 1 else 12 end * interval_count){% endset %}
{%- set per_month_amount = money_times('priced.period_amount_local', months_numerator) %}
with_mrr as (
    select
        billing_system, subscription_id, customer_id, status, plan_id, product_id, product_name,
        priced.currency, unit_amount_local, quantity, {{ interval }}, interval_count,
        created_at, activated_at, trial_start, trial_end, current_period_start,
        current_period_end, canceled_at, ended_at, paused_at, resumes_at, coupon_id,
        is_deleted, customer_is_deleted,
        {{ divide_once(per_month_amount, months_denominator) }} as mrr_local,
        {{ divide_once(money_times(per_month_amount, 'fx.rate'), months_denominator) }} as mrr
    from priced
    left join {{ ref('int_fx_rates') }} as fx on fx.currency = priced.currency
)

select * from with_mrr
