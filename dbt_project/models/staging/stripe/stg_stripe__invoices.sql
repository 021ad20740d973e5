-- Stripe invoices in the neutral status vocabulary: draft, open, past_due (an open invoice
-- whose automatic collection was attempted and failed, or whose due date passed by the
-- latest sync's clock), paid, uncollectible (written off: nothing more will be collected,
-- as for the invoices of a free extension, pause_collection mark_uncollectible), void.
-- Totals from minor units. Every Stripe invoice is a charge (credits are credit notes, a
-- separate object). The subscription is `parent.subscription_details.subscription` (API
-- 2026-10-28.endive has no top-level `subscription`).
{% set src = source('stripe', 'invoices') %}
{% set c = columns_of(src, required=false) %}
with synced as (
    select max(cast(synced_at as {{ type_timestamptz() }})) as synced_at
    from {{ source('stripe', 'syncs') }}
)

select
    'stripe' as billing_system,
    cast(id as {{ type_text() }}) as invoice_id,
    cast(customer as {{ type_text() }}) as customer_id,
    cast({{ col(c, 'parent__subscription_details__subscription') }} as {{ type_text() }}) as subscription_id,
    upper(currency) as currency,
    {{ minor_to_major('total', 'currency', 'stripe') }} as total_local,
    case
        when status = 'open' and (
            coalesce(cast({{ col(c, 'attempt_count', 'bigint') }} as bigint), 0) > 0
            or {{ from_epoch(col(c, 'due_date', 'bigint')) }} < synced.synced_at
        ) then 'past_due'
        when status in ('draft', 'open', 'paid', 'uncollectible', 'void') then status
    end as status,
    'charge' as invoice_type,
    {{ from_epoch('created') }} as created_at,
    {{ from_epoch(col(c, 'status_transitions__paid_at', 'bigint')) }} as paid_at
from {{ raw_or_empty(src, ['id', 'customer', 'currency', 'total', 'status', 'created']) }}
cross join synced
