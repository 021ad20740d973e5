-- Customers of the three systems. `customer_alt_id` is a second id a cancel page may send
-- (Recurly: the account id beside its code, which is customer_id).
{% for system in ['stripe', 'recurly', 'chargebee'] %}
select billing_system, customer_id, customer_alt_id, email, name, created_at
from {{ ref('stg_' ~ system ~ '__customers') }}
{% if not loop.last %}union all{% endif %}
{% endfor %}
