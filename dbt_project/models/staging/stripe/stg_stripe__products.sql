select
    'stripe' as billing_system,
    cast(id as varchar) as product_id,
    cast(name as varchar) as product_name
from {{ source('stripe', 'products') }}
