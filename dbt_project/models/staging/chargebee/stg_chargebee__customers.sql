-- Chargebee customers, deleted ones kept (is_deleted): the source lists with
-- include_deleted=true so that a deletion arrives as a change.
{% set src = source('chargebee', 'customers') %}
{% set c = columns_of(src) %}
select
    'chargebee' as billing_system,
    cast(id as {{ type_text() }}) as customer_id,
    cast(null as {{ type_text() }}) as customer_alt_id,
    cast({{ col(c, 'email') }} as {{ type_text() }}) as email,
    cast(nullif(trim(concat(coalesce({{ col(c, 'first_name') }}, ''), ' ', coalesce({{ col(c, 'last_name') }}, ''))), '')
        as {{ type_text() }}) as name,
    {{ from_epoch('created_at') }} as created_at,
    coalesce({{ col(c, 'deleted', 'boolean') }}, false) as is_deleted
from {{ src }}
