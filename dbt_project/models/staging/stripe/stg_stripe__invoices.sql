-- Stripe invoices: totals from minor units; `draft`/`open` are unpaid (open), and
-- `uncollectible` (written off: nothing is owed any more, as for the invoices of a free
-- extension, pause_collection mark_uncollectible) counts as void. The
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
        when status in ('void', 'uncollectible') then 'void'
        else 'open'
    end as status,
    {{ from_epoch('created') }} as created_at,
    {{ from_epoch(col(c, 'status_transitions__paid_at', 'bigint')) }} as paid_at
from {{ src }}
