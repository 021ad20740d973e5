-- Recurly has no products: each plan is its own product, named by the plan.
select
    'recurly' as billing_system,
    cast(code as varchar) as product_id,
    cast(name as varchar) as product_name
from {{ source('recurly', 'plans') }}
