-- Paid invoices per customer, in the reporting currency: the money actually collected
-- that repurchase cohorts count (validation.md §6): paid charge invoices, never a credit
-- invoice (Recurly `type: credit`), which gives money back.
with invoices as (
    {% for system in billing_systems() %}
    select
        billing_system, invoice_id, customer_id, subscription_id, currency, total_local, status,
        invoice_type, paid_at
    from {{ ref('stg_' ~ system ~ '__invoices') }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
)

select
    i.billing_system,
    i.invoice_id,
    i.customer_id,
    i.subscription_id,
    i.currency,
    i.total_local,
    cast({{ money_times('i.total_local', 'fx.rate') }} as {{ type_decimal() }}) as total,
    i.paid_at
from invoices as i
left join {{ ref('int_fx_rates') }} as fx on fx.currency = i.currency
where i.status = 'paid' and i.paid_at is not null and i.invoice_type = 'charge'
