-- Customers of the three systems. `customer_alt_id` is a second id a cancel page may send
-- (Recurly: the account id beside its code, which is customer_id). A deleted customer
-- stays, `is_deleted`: its history still counts.
{% for system in billing_systems() %}
select billing_system, customer_id, customer_alt_id, email, name, created_at, is_deleted
from {{ ref('stg_' ~ system ~ '__customers') }}
{% if not loop.last %}union all{% endif %}
{% endfor %}
