-- Recurly invoices: the invoice number is the merchant-facing id; states map to paid,
-- open (pending, processing, past_due) or void (voided, failed).
{% set src = source('recurly', 'invoices') %}
{% set c = columns_of(src) %}
select
    'recurly' as billing_system,
    cast(number as varchar) as invoice_id,
    cast(account__code as varchar) as customer_id,
    cast({{ json_text(col(c, 'subscription_ids'), [0]) }} as varchar) as subscription_id,
    upper(currency) as currency,
    cast(total as decimal(38, 10)) as total_local,
    case
        when state = 'paid' then 'paid'
        when state in ('voided', 'failed') then 'void'
        else 'open'
    end as status,
    cast(created_at as timestamp with time zone) as created_at,
    cast(case when state = 'paid' then {{ col(c, 'closed_at', 'timestamp with time zone') }} end
        as timestamp with time zone) as paid_at
from {{ src }}
