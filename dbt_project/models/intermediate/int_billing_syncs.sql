-- Every billing sync with the billing API's own clock at its start (the `Date` header):
-- the validation time T is the latest per system.
{% for system in billing_systems() %}
select billing_system, synced_at from {{ ref('stg_' ~ system ~ '__syncs') }}
{% if not loop.last %}union all{% endif %}
{% endfor %}
