-- Episodes per month of first landing × billing system × page × offer type, with the
-- validated counts and revenue. save_rate = saved / (saved + canceled) over validated
-- episodes (validation.md §5); unknown and pending outcomes are left out of it.
select
    {{ month_start('first_landed_at') }} as month,
    billing_system,
    page_id,
    offer_type,
    cast(count(*) as integer) as episodes,
    cast(sum(case when page_outcome = 'saved' then 1 else 0 end) as integer) as saves,
    cast(sum(case when validation_status = 'valid_save' and validated_outcome = 'saved' then 1 else 0 end) as integer)
        as valid_saves,
    cast(sum(case when validation_status = 'invalid_save' then 1 else 0 end) as integer) as invalid_saves,
    cast(sum(case when validated_outcome = 'canceled' then 1 else 0 end) as integer) as cancels,
    cast(sum(case when validated_outcome = 'unknown' then 1 else 0 end) as integer) as unknowns,
    cast(sum(case when validated_outcome = 'pending' then 1 else 0 end) as integer) as pending,
    case
        when sum(case when validated_outcome in ('saved', 'canceled') then 1 else 0 end) = 0 then null
        else {{ divide_once(
            "sum(case when validated_outcome = 'saved' then 1 else 0 end)",
            "sum(case when validated_outcome in ('saved', 'canceled') then 1 else 0 end)"
        ) }}
    end as save_rate,
    cast(sum(saved_mrr) as {{ type_decimal() }}) as saved_mrr,
    cast(sum(lost_mrr) as {{ type_decimal() }}) as lost_mrr
from {{ ref('int_exit_episodes__validated') }}
group by 1, 2, 3, 4
