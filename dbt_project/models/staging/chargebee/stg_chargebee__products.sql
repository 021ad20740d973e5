-- Chargebee items (the products item prices belong to).
select
    'chargebee' as billing_system,
    cast(id as varchar) as product_id,
    cast(coalesce(external_name, name) as varchar) as product_name
from {{ source('chargebee', 'items') }}
where not coalesce(deleted, false)
