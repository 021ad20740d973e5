-- Recurly invoices: the invoice number is the merchant-facing id. States map to the
-- neutral vocabulary: a charge invoice pending or processing is open (Recurly has no
-- drafts: a draft is pending, so it reads as open), past_due, paid, failed (collection
-- given up) is uncollectible, voided is void. A credit invoice (`type` credit) is open
-- while credit remains and closed once fully applied, read as paid; invoice_type tells
-- it apart, and its total stays as Recurly sends it (negative). Legacy invoices (before
-- credit invoices existed) are charges.
{% set src = source('recurly', 'invoices') %}
{% set c = columns_of(src, required=false) %}
with invoices as (
    select
        *,
        case
            when state in ('paid', 'closed') then 'paid'
            when state = 'past_due' then 'past_due'
            when state = 'failed' then 'uncollectible'
            when state = 'voided' then 'void'
            else 'open'
        end as neutral_status
    from {{ raw_or_empty(src, ['number', 'account__code', 'currency', 'total', 'state', 'created_at']) }}
)

select
    'recurly' as billing_system,
    cast(number as {{ type_text() }}) as invoice_id,
    cast(account__code as {{ type_text() }}) as customer_id,
    cast({{ json_text(col(c, 'subscription_ids'), [0]) }} as {{ type_text() }}) as subscription_id,
    upper(currency) as currency,
    cast(total as {{ type_decimal() }}) as total_local,
    neutral_status as status,
    case when {{ col(c, 'type') }} = 'credit' then 'credit' else 'charge' end as invoice_type,
    cast(created_at as {{ type_timestamptz() }}) as created_at,
    cast(case when neutral_status = 'paid' then {{ col(c, 'closed_at', type_timestamptz()) }} end
        as {{ type_timestamptz() }}) as paid_at
from invoices
