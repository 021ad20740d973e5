select
    'stripe' as billing_system,
    cast(id as {{ type_text() }}) as product_id,
    cast(name as {{ type_text() }}) as product_name
from {{ source('stripe', 'products') }}
