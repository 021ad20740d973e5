-- Recurly has no products: each plan is its own product, named by the plan.
select
    'recurly' as billing_system,
    cast(code as {{ type_text() }}) as product_id,
    cast(name as {{ type_text() }}) as product_name
from {{ source('recurly', 'plans') }}
