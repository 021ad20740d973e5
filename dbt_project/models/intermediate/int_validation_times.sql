-- The validation time T per billing system (validation.md §2): when its billing data was
-- last synced, i.e. the billing API's own clock at the start of the latest load. A system
-- never synced takes the latest T of the others; the var `validation_time` pins T for all.
with systems as (
    {% for system in billing_systems() %}
    select '{{ system }}' as billing_system
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

synced as (
    select billing_system, max(synced_at) as synced_at
    from {{ ref('int_billing_syncs') }}
    group by billing_system
)

select
    systems.billing_system,
    {% if var('validation_time') %}
    cast('{{ var("validation_time") }}' as {{ type_timestamptz() }})
    {% else %}
    coalesce(
        synced.synced_at,
        (select max(synced_at) from synced),
        current_timestamp
    )
    {% endif %} as validated_at
from systems
left join synced on synced.billing_system = systems.billing_system
