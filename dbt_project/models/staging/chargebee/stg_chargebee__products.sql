-- Chargebee products: the items of Product Catalog 2.0; a 1.0 site has no items, so each
-- of its plans and add-ons is its own product (see stg_chargebee__prices).
{% set items = source('chargebee', 'items') %}
{% if relation_exists(items) %}
{% set c = columns_of(items) %}
select
    'chargebee' as billing_system,
    cast(id as {{ type_text() }}) as product_id,
    cast(coalesce({{ col(c, 'external_name') }}, name) as {{ type_text() }}) as product_name
from {{ items }}
where not coalesce({{ col(c, 'deleted', 'boolean') }}, false)
{% else %}
select distinct
    billing_system,
    product_id,
    price_name as product_name
from {{ ref('stg_chargebee__prices') }}
{% endif %}
