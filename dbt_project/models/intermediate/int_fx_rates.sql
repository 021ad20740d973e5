-- Exchange rates into the reporting currency: reporting-currency units per 1 unit of
-- `currency`. From the `fx_rates` seed by default; set the var `fx_rates_relation` to a
-- table of your own (columns currency, rate) to replace it (the demo loads a scenario's).
{% set relation = var('fx_rates_relation', none) %}
select
    upper(cast(currency as varchar)) as currency,
    cast(rate as decimal(38, 10)) as rate
from {% if relation %}{{ relation }}{% else %}{{ ref('fx_rates') }}{% endif %}
