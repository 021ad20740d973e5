-- Exchange rates into the reporting currency: reporting-currency units per 1 unit of
-- `currency`. From the `fx_rates` seed by default; set the var `fx_rates_relation` to a
-- table of your own (columns currency, rate) to replace it (the demo loads a scenario's).
{% set relation = var('fx_rates_relation', none) %}
select
    upper(cast(currency as {{ type_text() }})) as currency,
    cast(rate as {{ type_decimal() }}) as rate
from {% if relation %}{{ relation }}{% else %}{{ ref('fx_rates') }}{% endif %}
