{% set src = source('stripe', 'customers') %}
{% set c = columns_of(src) %}
select
    'stripe' as billing_system,
    cast(id as varchar) as customer_id,
    cast(null as varchar) as customer_alt_id,
    cast({{ col(c, 'email') }} as varchar) as email,
    cast({{ col(c, 'name') }} as varchar) as name,
    {{ from_epoch('created') }} as created_at
from {{ src }}
where not coalesce(cast({{ col(c, 'deleted', 'boolean') }} as boolean), false)
