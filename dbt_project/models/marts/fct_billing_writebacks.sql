-- One row per write-back action (marts.md): the runner's ledger as it is now. A view, so
-- BI reads the live state; empty (with the contract's columns) until write-backs first run.
-- On Spark a table: the ledger is a copy published to the lake before each dbt run
-- (orchestration/spark.py), and the Python steps read marts as parquet folders.
{%- set ledger = source('writebacks', 'actions') %}
{{ config(materialized='table' if target.type == 'spark' else 'view') }}
with ledger as (
    {%- if relation_exists(ledger) %}
    select * from {{ ledger }}
    {%- else %}
    select
        {%- for name, column in model.columns.items() %}
        {{ cast('null', column.data_type) }} as {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
    where 1 = 0
    {%- endif %}
)

select
    action_id,
    episode_id,
    session_id,
    billing_system,
    subscription_id,
    customer_id,
    action_type,
    offer_id,
    action_at,
    mode,
    parameters,
    request,
    status,
    attempts,
    reason,
    error,
    billing_request_id,
    derived_at,
    last_attempt_at,
    applied_at,
    updated_at
from ledger
