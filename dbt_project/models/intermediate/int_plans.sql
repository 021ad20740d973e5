-- Plans/prices of the three systems with their product's name, one row per (system, plan).
with plans as (
    {% for system in billing_systems() %}
    select billing_system, plan_id, product_id, currency, unit_amount_local, {{ adapter.quote('interval') }}, interval_count
    from {{ ref('stg_' ~ system ~ '__plans') }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

products as (
    {% for system in billing_systems() %}
    select billing_system, product_id, product_name from {{ ref('stg_' ~ system ~ '__products') }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
)

select plans.*, products.product_name
from plans
left join products
    on products.billing_system = plans.billing_system and products.product_id = plans.product_id
