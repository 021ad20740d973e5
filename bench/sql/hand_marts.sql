-- The marts bench's hand-written baseline: fct_exit_episodes and fct_repurchase_cohorts in
-- ONE DuckDB statement, from the staging views and the fx_rates seed dbt builds (no staging
-- rule here: currencies, status maps and raw shapes stay in models/staging). The
-- intermediate and mart rules (docs/spec/validation.md §2-6) are written again, by hand,
-- for speed: the question it answers is whether a hand-tuned formulation beats the models'
-- SQL. bench_marts.py checks it row for row against the dbt marts (EXCEPT ALL both ways);
-- a rule changed in a model and not here shows up there as DIFFERENT.
-- dbt_project.yml's defaults are written in: the save window (30 days) as 720 hours, the
-- fx_rates seed as the rates, T as the latest sync, all three billing systems. Staging
-- views must exist (bench_marts.py runs them first); tables dbt writes are not read.
create or replace table bench.hand_marts as
with recursive
fx as (
    select upper(cast(currency as varchar)) as currency, cast(rate as decimal(38, 10)) as rate
    from reference.fx_rates
),

synced as (
    select billing_system, max(synced_at) as synced_at
    from (
        from staging.stg_stripe__syncs
        union all by name from staging.stg_recurly__syncs
        union all by name from staging.stg_chargebee__syncs
    )
    group by billing_system
),

vt as (
    select
        s.billing_system,
        coalesce(y.synced_at, (select max(synced_at) from synced), current_timestamp)
            as validated_at
    from (values ('stripe'), ('recurly'), ('chargebee')) as s (billing_system)
    left join synced as y using (billing_system)
),

-- Subscriptions and their MRR (int_subscription_items, int_subscriptions).
plans as (
    from staging.stg_stripe__plans
    union all by name from staging.stg_recurly__plans
    union all by name from staging.stg_chargebee__plans
),

raw_items as (
    from staging.stg_stripe__subscription_items
    union all by name from staging.stg_recurly__subscription_items
    union all by name from staging.stg_chargebee__subscription_items
),

tiers as (
    select
        billing_system, price_id, currency, up_to, subscription_id, package_size,
        coalesce(unit_amount_local, 0) as unit_amount_local,
        coalesce(flat_amount_local, 0) as flat_amount_local,
        coalesce(lag(up_to) over (
            partition by billing_system, subscription_id, price_id, currency order by tier_index
        ), 0) as above
    from (
        from staging.stg_stripe__price_tiers
        union all by name from staging.stg_recurly__price_tiers
        union all by name from staging.stg_chargebee__price_tiers
    )
),

tiered as (
    select
        i.billing_system, i.subscription_id, i.item_id,
        sum(case
            when i.pricing_model = 'tiered' and i.quantity > t.above
                then t.unit_amount_local * case
                    when t.package_size is null
                        then least(i.quantity, coalesce(t.up_to, i.quantity)) - t.above
                    else ceil(cast(least(i.quantity, coalesce(t.up_to, i.quantity)) - t.above
                        as decimal(38, 10)) / t.package_size) end
                    + t.flat_amount_local
            when i.pricing_model in ('volume', 'stairstep')
                and i.quantity > t.above and (t.up_to is null or i.quantity <= t.up_to)
                then t.unit_amount_local * case
                    when t.package_size is null then i.quantity
                    else ceil(cast(i.quantity as decimal(38, 10)) / t.package_size) end
                    + t.flat_amount_local
            else 0
        end) as amount_local
    -- a subscription's own tiers of the price, else the price's: keys only in the join (an
    -- `or` there pairs each item with every subscription's own tiers of its price)
    from (
        select i.*, own.price_id is not null as has_own
        from raw_items as i
        left join (
            select distinct billing_system, subscription_id, price_id
            from tiers where subscription_id is not null
        ) as own
            on own.billing_system = i.billing_system
            and own.subscription_id = i.subscription_id and own.price_id = i.price_id
    ) as i
    join tiers as t
        on t.billing_system = i.billing_system and t.price_id = i.price_id
        and t.currency = i.currency
        and t.subscription_id is not distinct from
            case when i.has_own then i.subscription_id end
    where i.pricing_model in ('tiered', 'volume', 'stairstep')
    group by all
),

items as (
    select
        i.billing_system, i.subscription_id, i.item_id, i.item_type, i.usage_type,
        coalesce(i.currency, p.currency) as currency,
        coalesce(i."interval", p."interval") as "interval",
        coalesce(i.interval_count, p.interval_count) as interval_count,
        cast(case i.pricing_model
            when 'per_unit' then coalesce(i.unit_amount_local,
                case when coalesce(i.currency, p.currency) = p.currency then p.unit_amount_local end)
                * i.quantity
            when 'flat_fee' then i.unit_amount_local
            when 'package' then i.unit_amount_local * case
                when i.package_rounding = 'down'
                    then floor(cast(i.quantity as decimal(38, 10)) / i.package_size)
                else ceil(cast(i.quantity as decimal(38, 10)) / i.package_size) end
            else t.amount_local
        end as decimal(38, 10)) as amount_local
    from raw_items as i
    left join plans as p on p.billing_system = i.billing_system and p.plan_id = i.price_id
    left join tiered as t
        on t.billing_system = i.billing_system and t.subscription_id = i.subscription_id
        and t.item_id = i.item_id
),

per_subscription as (
    select
        billing_system, subscription_id,
        arg_min({'currency': currency, 'interval': "interval", 'count': interval_count},
            {'unpriced': amount_local is null, 'amount': coalesce(-amount_local, 0), 'id': item_id})
            filter (where item_type = 'plan') as plan,
        sum(amount_local) filter (where item_type in ('plan', 'addon') and usage_type = 'licensed')
            as period_amount_local
    from items
    group by all
),

subs as (
    select
        s.billing_system, s.subscription_id, s.customer_id, s.status, s.activated_at,
        s.canceled_at, s.ended_at,
        cast(cast(cast(i.period_amount_local as decimal(38, 10))
            * case i.plan."interval"
                when 'month' then cast(1 as decimal(38, 10))
                when 'year' then cast(1 as decimal(38, 10)) / 12
                when 'week' then cast(52 as decimal(38, 10)) / 12
                when 'day' then cast(365 as decimal(38, 10)) / 12 end
            / i.plan.count as decimal(38, 10)) * fx.rate as decimal(38, 10)) as mrr
    from (
        from staging.stg_stripe__subscriptions
        union all by name from staging.stg_recurly__subscriptions
        union all by name from staging.stg_chargebee__subscriptions
    ) as s
    left join per_subscription as i using (billing_system, subscription_id)
    left join fx on fx.currency = coalesce(s.currency, i.plan.currency)
),

-- Episodes (int_exit_sessions__episode_walk, int_exit_episodes).
sessions as (
    from staging.stg_exit_sessions__sessions
),

ordered as (
    select
        session_id, billing_system, billing_id, started_at,
        row_number() over (partition by billing_system, billing_id order by started_at, session_id)
            as rn
    from sessions
),

walk as (
    select billing_system, billing_id, rn, session_id, session_id as episode_id,
        started_at as episode_start
    from ordered where rn = 1
    union all
    select
        o.billing_system, o.billing_id, o.rn, o.session_id,
        case when o.started_at >= w.episode_start + to_hours(720) then o.session_id
            else w.episode_id end,
        case when o.started_at >= w.episode_start + to_hours(720) then o.started_at
            else w.episode_start end
    from walk as w
    join ordered as o
        on o.billing_system = w.billing_system and o.billing_id = w.billing_id
        and o.rn = w.rn + 1
),

grouped as (
    select
        w.episode_id,
        min(s.billing_system) as billing_system,
        min(s.billing_id) as billing_id,
        min(w.episode_start) as first_landed_at,
        count(*) as session_count,
        min(s.action_at) filter (where s.action = 'canceled') as canceled_at,
        bool_or(s.action = 'offer_accepted') as accepted_offer,
        bool_or(s.action = 'deflected') as deflected,
        min(s.page_id) filter (where s.session_id = w.episode_id) as page_id,
        arg_max({'offer_id': s.offer_id, 'offer_type': s.offer_type},
            {'a': s.action_at, 's': s.started_at, 'i': s.session_id})
            filter (where s.action = 'offer_accepted') as offer
    from walk as w
    join sessions as s using (session_id)
    group by w.episode_id
),

episodes as (
    select
        e.episode_id, e.billing_system, e.billing_id, e.first_landed_at,
        e.first_landed_at + to_hours(720) as save_event_at,
        e.session_count,
        case when e.canceled_at is not null then 'canceled'
            when e.first_landed_at + to_hours(720) > t.validated_at then 'watch_list'
            else 'saved' end as page_outcome,
        case when e.canceled_at is not null then null
            when e.accepted_offer then 'offer'
            when e.deflected then 'deflect'
            else 'passive' end as save_type,
        case when e.canceled_at is not null then e.canceled_at
            when e.first_landed_at + to_hours(720) > t.validated_at then null
            else e.first_landed_at + to_hours(720) end as outcome_at,
        e.offer.offer_id as offer_id,
        e.offer.offer_type as offer_type,
        e.page_id,
        t.validated_at
    from grouped as e
    join vt as t using (billing_system)
),

-- Matching (int_exit_episodes__matched): by subscription id, else by customer id.
by_subscription as (
    select e.episode_id, s.subscription_id
    from episodes as e
    join subs as s on s.billing_system = e.billing_system and s.subscription_id = e.billing_id
),

lookup_ids as (
    select billing_system, customer_id, customer_id as lookup_id from subs
    union all
    select billing_system, customer_id, customer_alt_id
    from (
        from staging.stg_stripe__customers
        union all by name from staging.stg_recurly__customers
        union all by name from staging.stg_chargebee__customers
    )
    where customer_alt_id is not null
),

by_customer as (
    select e.episode_id, s.subscription_id
    from episodes as e
    join lookup_ids as c on c.billing_system = e.billing_system and c.lookup_id = e.billing_id
    join subs as s on s.billing_system = c.billing_system and s.customer_id = c.customer_id
    anti join by_subscription as b on b.episode_id = e.episode_id
    qualify 1 = row_number() over (
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
            s.subscription_id
    )
),

-- Validation (int_exit_episodes__validated, fct_exit_episodes).
statused as (
    select
        e.*, s.subscription_id, s.customer_id, s.mrr,
        case
            when s.subscription_id is null then 'no_match'
            when s.ended_at <= e.first_landed_at then 'expired_pre_session'
            when s.canceled_at < e.first_landed_at then 'canceled_pre_session'
            when e.page_outcome = 'canceled' then 'valid_cancel'
            when s.activated_at > e.first_landed_at then 'activated_post_session'
            when s.canceled_at >= e.first_landed_at and s.canceled_at <= case
                when e.page_outcome = 'saved' then e.save_event_at else e.validated_at end
                then 'invalid_save'
            when s.ended_at > e.first_landed_at and s.ended_at <= case
                when e.page_outcome = 'saved' then e.save_event_at else e.validated_at end
                then 'invalid_save'
            when s.status = 'unpaid' then 'invalid_save'
            else 'valid_save'
        end as validation_status
    from episodes as e
    left join (from by_subscription union all from by_customer) as m using (episode_id)
    left join subs as s
        on s.billing_system = e.billing_system and s.subscription_id = m.subscription_id
),

fct_exit_episodes as (
    select
        episode_id, billing_system, billing_id, first_landed_at, save_event_at,
        cast(session_count as integer) as session_count, page_outcome, save_type, outcome_at,
        offer_id, offer_type, page_id, subscription_id, customer_id, validation_status,
        validated_outcome, mrr,
        cast(case when validated_outcome = 'saved' then mrr else 0 end as decimal(38, 10))
            as saved_mrr,
        cast(case when validated_outcome = 'canceled' and subscription_id is not null then mrr
            else 0 end as decimal(38, 10)) as lost_mrr,
        validated_at
    from (
        select
            *,
            -- canceled_pre_session, invalid_save and valid_cancel: canceled
            case validation_status
                when 'no_match' then if(page_outcome = 'canceled', 'canceled', 'unknown')
                when 'valid_save' then if(page_outcome = 'watch_list', 'pending', 'saved')
                when 'expired_pre_session' then 'unknown'
                when 'activated_post_session' then 'unknown'
                else 'canceled'
            end as validated_outcome
        from statused
    )
),

-- Repurchase cohorts (int_invoices_paid, fct_repurchase_cohorts).
cohort_episodes as (
    select
        episode_id, billing_system, customer_id, first_landed_at,
        cast(date_trunc('month', first_landed_at at time zone 'UTC') as date) as cohort_month,
        page_outcome, validated_outcome, save_type, offer_type, page_id
    from fct_exit_episodes
),

horizon as (
    select max(validated_at) at time zone 'UTC' as t from vt
),

paid as (
    select
        e.episode_id,
        cast(i.total_local * fx.rate as decimal(38, 10)) as total,
        cast((extract(year from i.paid_at at time zone 'UTC')
            - extract(year from e.first_landed_at at time zone 'UTC')) * 12
            + extract(month from i.paid_at at time zone 'UTC')
            - extract(month from e.first_landed_at at time zone 'UTC') as integer) as month_offset,
        1 = row_number() over (partition by e.episode_id order by i.paid_at, i.invoice_id)
            as is_first
    from cohort_episodes as e
    join (
        from staging.stg_stripe__invoices
        union all by name from staging.stg_recurly__invoices
        union all by name from staging.stg_chargebee__invoices
    ) as i
        on i.billing_system = e.billing_system and i.customer_id = e.customer_id
        and i.paid_at >= e.first_landed_at
    left join fx on fx.currency = i.currency
    where i.status = 'paid' and i.invoice_type = 'charge'
),

per_episode as (
    select
        episode_id, month_offset, sum(total) as revenue, bool_or(is_first) as first_here,
        sum(total) filter (where is_first) as first_revenue
    from paid
    group by all
),

cells as (
    select
        e.cohort_month, e.page_outcome, e.validated_outcome, e.save_type, e.offer_type,
        e.page_id, p.month_offset,
        count(*) as repurchasing_episodes,
        count(*) filter (where p.first_here) as first_repurchase_episodes,
        sum(p.revenue) as repurchase_revenue,
        coalesce(sum(p.first_revenue), 0) as first_repurchase_revenue
    from per_episode as p
    join cohort_episodes as e using (episode_id)
    group by all
),

groups as (
    select
        cohort_month, page_outcome, validated_outcome, save_type, offer_type, page_id,
        count(*) as cohort_episodes,
        max(cast((extract(year from (select t from horizon))
            - extract(year from first_landed_at at time zone 'UTC')) * 12
            + extract(month from (select t from horizon))
            - extract(month from first_landed_at at time zone 'UTC') as integer)) as last_offset
    from cohort_episodes
    group by all
),

dense as (
    select
        g.cohort_month, g.page_outcome, g.validated_outcome, g.save_type, g.offer_type,
        g.page_id,
        cast(o.month_offset as integer) as month_offset,
        cast(g.cohort_episodes as integer) as cohort_episodes,
        cast(coalesce(c.repurchasing_episodes, 0) as integer) as repurchasing_episodes,
        cast(coalesce(c.first_repurchase_episodes, 0) as integer) as first_repurchase_episodes,
        cast(coalesce(c.repurchase_revenue, 0) as decimal(38, 10)) as repurchase_revenue,
        cast(coalesce(c.first_repurchase_revenue, 0) as decimal(38, 10))
            as first_repurchase_revenue,
        cast(g.cohort_month + o.month_offset * interval '1 month' as date) as cell_month,
        cast(g.cohort_month + (o.month_offset + 1) * interval '1 month' as date) as next_month
    from groups as g
    join range(0, (select max(last_offset) from groups) + 1) as o (month_offset)
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
    select
        * exclude (cell_month, next_month),
        cast(sum(repurchase_revenue) over (
            partition by cohort_month, page_outcome, validated_outcome, save_type, offer_type,
                page_id
            order by month_offset rows between unbounded preceding and current row
        ) as decimal(38, 10)) as cumulative_repurchase_revenue,
        next_month <= cast((select t from horizon) as date) as is_complete_month,
        cast(least(next_month, cast((select t from horizon) as date)) - cell_month as integer)
            as days_observed
    from dense
)

select 'fct_exit_episodes' as mart, * from fct_exit_episodes
union all by name
select 'fct_repurchase_cohorts' as mart, * from fct_repurchase_cohorts
