-- validation.md §6: money collected after the visit, by cohort month of S and calendar
-- months since (month_offset). Cells are dense from offset 0 to the month of T (the
-- latest billing sync), zeros included; null dimensions form groups of their own.
-- The cell of the month of T is of a month still running: `is_complete_month` and
-- `days_observed` say so, for BI to mark (or leave out) a partial month instead of
-- reading it as a collapse. They change no figure.
with episodes as (
    select
        episode_id,
        billing_system,
        customer_id,
        first_landed_at,
        {{ month_start('first_landed_at') }} as cohort_month,
        page_outcome,
        validated_outcome,
        save_type,
        offer_type,
        page_id
    from {{ ref('int_exit_episodes__validated') }}
),

horizon as (
    select max(validated_at) as validated_at from {{ ref('int_validation_times') }}
),

paid as (
    select
        e.episode_id,
        p.total,
        {{ month_offset('e.first_landed_at', 'p.paid_at') }} as month_offset,
        row_number() over (
            partition by e.episode_id order by p.paid_at, p.invoice_id
        ) as nth_payment
    from episodes as e
    inner join {{ ref('int_invoices_paid') }} as p
        on p.billing_system = e.billing_system
        and p.customer_id = e.customer_id
        and p.paid_at >= e.first_landed_at
),

per_episode as (
    select
        episode_id,
        month_offset,
        sum(total) as revenue,
        max(case when nth_payment = 1 then 1 else 0 end) as first_here,
        sum(case when nth_payment = 1 then total else 0 end) as first_revenue
    from paid
    group by episode_id, month_offset
),

cells as (
    select
        e.cohort_month,
        e.page_outcome,
        e.validated_outcome,
        e.save_type,
        e.offer_type,
        e.page_id,
        p.month_offset,
        count(*) as repurchasing_episodes,
        sum(p.first_here) as first_repurchase_episodes,
        sum(p.revenue) as repurchase_revenue,
        sum(p.first_revenue) as first_repurchase_revenue
    from per_episode as p
    inner join episodes as e on e.episode_id = p.episode_id
    group by 1, 2, 3, 4, 5, 6, 7
),

groups as (
    select
        cohort_month,
        page_outcome,
        validated_outcome,
        save_type,
        offer_type,
        page_id,
        count(*) as cohort_episodes,
        max({{ month_offset('first_landed_at', '(select validated_at from horizon)') }}) as last_offset
    from episodes
    group by 1, 2, 3, 4, 5, 6
),

grid as (
    select groups.*, o.month_offset
    from groups
    inner join {{ offsets_upto('(select max(last_offset) from groups)') }} as o
        on o.month_offset <= groups.last_offset
),

dense as (
    select
        g.cohort_month,
        g.page_outcome,
        g.validated_outcome,
        g.save_type,
        g.offer_type,
        g.page_id,
        g.month_offset,
        -- the cell's calendar month, the first day of the next one, and the day of T (UTC)
        cast(g.cohort_month + g.month_offset * interval '1 month' as date) as cell_month,
        cast(g.cohort_month + (g.month_offset + 1) * interval '1 month' as date) as next_month,
        cast({{ utc('(select validated_at from horizon)') }} as date) as t_day,
        g.cohort_episodes,
        coalesce(c.repurchasing_episodes, 0) as repurchasing_episodes,
        coalesce(c.first_repurchase_episodes, 0) as first_repurchase_episodes,
        coalesce(c.repurchase_revenue, 0) as repurchase_revenue,
        coalesce(c.first_repurchase_revenue, 0) as first_repurchase_revenue
    from grid as g
    left join cells as c
        on c.cohort_month = g.cohort_month
        and c.month_offset = g.month_offset
        and c.page_outcome is not distinct from g.page_outcome
        and c.validated_outcome is not distinct from g.validated_outcome
        and c.save_type is not distinct from g.save_type
        and c.offer_type is not distinct from g.offer_type
        and c.page_id is not distinct from g.page_id
)

select
    cohort_month,
    page_outcome,
    validated_outcome,
    save_type,
    offer_type,
    page_id,
    month_offset,
    cast(cohort_episodes as integer) as cohort_episodes,
    cast(repurchasing_episodes as integer) as repurchasing_episodes,
    cast(first_repurchase_episodes as integer) as first_repurchase_episodes,
    cast(repurchase_revenue as {{ type_decimal() }}) as repurchase_revenue,
    cast(first_repurchase_revenue as {{ type_decimal() }}) as first_repurchase_revenue,
    cast(
        sum(repurchase_revenue) over (
            partition by cohort_month, page_outcome, validated_outcome, save_type, offer_type, page_id
            order by month_offset
            rows between unbounded preceding and current row
        )
    as {{ type_decimal() }}) as cumulative_repurchase_revenue,
    next_month <= t_day as is_complete_month,
    cast(least(next_month, t_day) - cell_month as integer) as days_observed
from dense
