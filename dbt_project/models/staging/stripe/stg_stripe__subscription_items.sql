-- One row per item of each Stripe subscription (API 2026-10-28.endive: plan, price,
-- quantity and period live on the items), in the contract of int_subscription_items.
-- Stripe has no add-on notion: every item is a 'plan' item. The pricing model follows the
-- price: billing_scheme tiered with tiers_mode graduated -> 'tiered', volume -> 'volume'
-- (their tiers in stg_stripe__price_tiers); per_unit with transform_quantity -> 'package'
-- (divide_by units per package; Stripe's unit_amount is then the package's price), else
-- 'per_unit'. `package_rounding` is `transform_quantity.round`: Stripe bills
-- quantity ÷ divide_by rounded up (whole packages started) or down (whole packages
-- filled). A metered item (recurring.usage_type metered) has no quantity.
--
-- Currency: an item bills in the subscription's currency. When that is not its price's
-- own, Stripe bills the price's `currency_options` entry for it (the source expands
-- `data.currency_options` on prices; dlt lands each currency's amount as a column
-- `currency_options__<code>__unit_amount_decimal`), so the unit amount is that one. A
-- subscription in a currency its price has no option for (options not loaded) keeps the
-- currency and gets no unit amount here.
{% set src = source('stripe', 'subscriptions') %}
{% set c = columns_of(src) %}
{% set prices = source('stripe', 'prices') %}
{% set pc = columns_of(prices) %}
{% set option_codes = [] %}
{% for name in pc if name.startswith('currency_options__') and name.endswith('__unit_amount_decimal') %}
    {% do option_codes.append(name[18:-21]) %}
{% endfor %}
{#- The item's fields, read from its JSON in one pass (json_texts). -#}
{% set item_paths = {
    'item_id': ['id'],
    'price_id': ['price', 'id'],
    'expanded_product_id': ['price', 'product', 'id'],
    'product': ['price', 'product'],
    'usage_type': ['price', 'recurring', 'usage_type'],
    'billing_scheme': ['price', 'billing_scheme'],
    'tiers_mode': ['price', 'tiers_mode'],
    'divide_by': ['price', 'transform_quantity', 'divide_by'],
    'package_round': ['price', 'transform_quantity', 'round'],
    'quantity': ['quantity'],
    'unit_amount_decimal': ['price', 'unit_amount_decimal'],
    'unit_amount': ['price', 'unit_amount'],
    'price_currency': ['price', 'currency'],
    'price_interval': ['price', 'recurring', 'interval'],
    'interval_count': ['price', 'recurring', 'interval_count'],
} %}
with items as (
    select
        s.id as subscription_id,
        lower(cast({{ col(c, 'currency') }} as {{ type_text() }})) as subscription_currency,
        {{ json_texts('item.value', item_paths.values() | list) }} as texts
    from {{ src }} as s
    cross join {{ json_elements(col(c, 'items__data'), 'item') }}
),

texts as (
    select
        subscription_id,
        subscription_currency,
        {%- for name in item_paths %}
        {{ json_texts_at('texts', loop.index) }} as {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
    from items
),

fields as (
    select
        subscription_id,
        item_id,
        price_id,
        coalesce(expanded_product_id, product) as product_id,
        coalesce(usage_type, 'licensed') as usage_type,
        billing_scheme,
        tiers_mode,
        cast(divide_by as integer) as divide_by,
        package_round,
        cast(quantity as integer) as quantity,
        coalesce(unit_amount_decimal, unit_amount) as unit_amount,
        lower(price_currency) as price_currency,
        subscription_currency,
        price_interval,
        cast(interval_count as integer) as interval_count
    from texts
),

in_currency as (
    select
        fields.*,
        coalesce(fields.subscription_currency, fields.price_currency) as currency,
        case
            when fields.subscription_currency is null
                or fields.subscription_currency = fields.price_currency
                then fields.unit_amount
            {% if option_codes %}
            else case fields.subscription_currency
                {% for code in option_codes %}
                when '{{ code }}' then coalesce(
                    cast(p.currency_options__{{ code }}__unit_amount_decimal as {{ type_text() }}),
                    cast({{ col(pc, 'currency_options__' ~ code ~ '__unit_amount', 'bigint') }} as {{ type_text() }})
                )
                {% endfor %}
            end
            {% endif %}
        end as unit_amount_in_currency
    from fields
    left join {{ prices }} as p on p.id = fields.price_id
),

modelled as (
    select
        in_currency.*,
        case
            when billing_scheme = 'tiered' and tiers_mode = 'volume' then 'volume'
            when billing_scheme = 'tiered' then 'tiered'
            when divide_by is not null then 'package'
            else 'per_unit'
        end as pricing_model
    from in_currency
)

select
    'stripe' as billing_system,
    cast(subscription_id as {{ type_text() }}) as subscription_id,
    cast(item_id as {{ type_text() }}) as item_id,
    'plan' as item_type,
    cast(price_id as {{ type_text() }}) as price_id,
    cast(product_id as {{ type_text() }}) as product_id,
    cast(usage_type as {{ type_text() }}) as usage_type,
    pricing_model,
    case when pricing_model = 'package' then divide_by end as package_size,
    cast(case when pricing_model = 'package' then coalesce(package_round, 'up') end as {{ type_text() }})
        as package_rounding,
    case when usage_type = 'metered' then null else quantity end as quantity,
    cast(
        case
            when pricing_model in ('per_unit', 'package')
                then {{ minor_to_major('unit_amount_in_currency', 'currency', 'stripe') }}
        end
    as {{ type_decimal() }}) as unit_amount_local,
    upper(currency) as currency,
    cast(price_interval as {{ type_text() }}) as {{ adapter.quote('interval') }},
    interval_count
from modelled
