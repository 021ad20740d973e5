-- Stripe invoices: totals from minor units; `open`/`uncollectible` are unpaid. The
-- subscription is `parent.subscription_details.subscription` (API 2026-10-28.endive has no
-- top-level `subscription`).
{% set src = source('stripe', 'invoices') %}
{% set c = columns_of(src) %}
select
    'stripe' as billing_system,
    cast(id as varchar) as invoice_id,
    cast(customer as varchar) as customer_id,
    cast({{ col(c, 'parent__subscription_details__subscription') }} as varchar) as subscription_id,
    upper(currency) as currency,
    {{ minor_to_major('total', 'currency', 'stripe') }} as total_local,
    case
        when status = 'paid' then 'paid'
        when status = 'void' then 'void'
        else 'open'
    end as status,
    {{ from_epoch('created') }} as created_at,
    {{ from_epoch(col(c, 'status_transitions__paid_at', 'bigint')) }} as paid_at
from {{ src }}
