-- Every Chargebee price a subscription can hold, on either Product Catalog: item prices
-- on 2.0 (type from `item_type`, usage from the item's `metered`), plans and add-ons on
-- 1.0 (an add-on with `charge_type` non_recurring is a one-time charge; 1.0 has no items,
-- so a plan or add-on is its own product). A site has one catalog: the other's tables do
-- not exist and give no rows. An archived price (no new sales) stays: its subscriptions
-- go on; a deleted one is left out. Tier models (tiered, volume, stairstep) have no unit price;
-- their tiers stay JSON text here for stg_chargebee__price_tiers. Chargebee states a
-- package price (so much per package of n units) as a tiered price of one `package` tier
-- from unit 1 without end: that is pricing_model package here, its unit amount the
-- package's price and package_size n.
{% set parts = [] %}
{% set item_prices = source('chargebee', 'item_prices') %}
{% set items = source('chargebee', 'items') %}
{% if relation_exists(item_prices) %}
    {% set c = columns_of(item_prices) %}
    {% set metered = relation_exists(items) and 'metered' in columns_of(items) %}
    {% set sql %}
    select
        cast(p.id as {{ type_text() }}) as price_id,
        cast(p.item_id as {{ type_text() }}) as product_id,
        cast(coalesce({{ col(c, 'external_name') }}, name) as {{ type_text() }}) as price_name,
        cast(coalesce({{ col(c, 'item_type') }}, 'plan') as {{ type_text() }}) as price_type,
        cast(currency_code as {{ type_text() }}) as currency_code,
        cast(pricing_model as {{ type_text() }}) as pricing_model,
        {{ col(c, 'price', 'bigint') }} as price,
        cast({{ col(c, 'period_unit') }} as {{ type_text() }}) as period_unit,
        cast({{ col(c, 'period', 'bigint') }} as integer) as period,
        {% if metered -%}coalesce(i.metered, false){%- else %}false{% endif %} as metered,
        cast({{ col(c, 'tiers') }} as {{ type_text() }}) as tiers,
        coalesce({{ col(c, 'deleted', 'boolean') }}, false) or {{ col(c, 'status') }} = 'deleted' as deleted
    from {{ item_prices }} as p
    {% if metered -%}
    {#- a join, not a correlated subquery: Spark 4.3 fails on that one (INTERNAL_ERROR_ATTRIBUTE_NOT_FOUND) -#}
    left join (select id, bool_or(metered) as metered from {{ items }} group by id) as i on i.id = p.item_id
    {% endif %}
    {% endset %}
    {% do parts.append(sql) %}
{% endif %}
{% for name in ['plans', 'addons'] %}
    {% set src = source('chargebee', name) %}
    {% if relation_exists(src) %}
        {% set c = columns_of(src) %}
        {% set price_type = "'plan'" if name == 'plans' else
            "case when " ~ col(c, 'charge_type') ~ " = 'non_recurring' then 'charge' else 'addon' end" %}
        {% set sql %}
        select
            cast(id as {{ type_text() }}) as price_id,
            cast(id as {{ type_text() }}) as product_id,
            cast(coalesce({{ col(c, 'invoice_name') }}, name) as {{ type_text() }}) as price_name,
            cast({{ price_type }} as {{ type_text() }}) as price_type,
            cast(currency_code as {{ type_text() }}) as currency_code,
            cast(coalesce(pricing_model, {{ col(c, 'charge_model') }}) as {{ type_text() }}) as pricing_model,
            {{ col(c, 'price', 'bigint') }} as price,
            -- a non-recurring add-on's period_unit is not_applicable: it has none
            cast(nullif({{ col(c, 'period_unit') }}, 'not_applicable') as {{ type_text() }}) as period_unit,
            cast({{ col(c, 'period', 'bigint') }} as integer) as period,
            false as metered,
            cast({{ col(c, 'tiers') }} as {{ type_text() }}) as tiers,
            cast(coalesce({{ col(c, 'status') }}, 'active') = 'deleted' as boolean) as deleted
        from {{ src }}
        {% endset %}
        {% do parts.append(sql) %}
    {% endif %}
{% endfor %}

with prices as (
    {% for sql in parts %}
    {{ sql }}
    {% if not loop.last %}union all{% endif %}
    {% else %}
    select
        cast(null as {{ type_text() }}) as price_id, cast(null as {{ type_text() }}) as product_id,
        cast(null as {{ type_text() }}) as price_name, cast(null as {{ type_text() }}) as price_type,
        cast(null as {{ type_text() }}) as currency_code, cast(null as {{ type_text() }}) as pricing_model,
        cast(null as bigint) as price, cast(null as {{ type_text() }}) as period_unit,
        cast(null as integer) as period, false as metered, cast(null as {{ type_text() }}) as tiers,
        cast(null as boolean) as deleted
    where 1 = 0
    {% endfor %}
)

, packaged as (
    select
        *,
        pricing_model = 'tiered'
            and {{ json_text('tiers', [0, 'pricing_type']) }} = 'package'
            and {{ json_text('tiers', [0, 'ending_unit']) }} is null
            and {{ json_text('tiers', [1, 'starting_unit']) }} is null as is_package
    from prices
)

select
    'chargebee' as billing_system,
    price_id,
    product_id,
    price_name,
    price_type,
    upper(currency_code) as currency,
    case when is_package then 'package' else pricing_model end as pricing_model,
    cast(case
        when pricing_model in ('per_unit', 'flat_fee')
            then {{ minor_to_major('price', 'currency_code', 'chargebee') }}
        when is_package
            then {{ minor_to_major(json_text('tiers', [0, 'price']), 'currency_code', 'chargebee') }}
    end as {{ type_decimal() }}) as unit_amount_local,
    cast(case when is_package then {{ json_text('tiers', [0, 'package_size']) }} end as integer)
        as package_size,
    period_unit as {{ adapter.quote('interval') }},
    period as interval_count,
    case when metered then 'metered' else 'licensed' end as usage_type,
    tiers
from packaged
where not coalesce(deleted, false)
