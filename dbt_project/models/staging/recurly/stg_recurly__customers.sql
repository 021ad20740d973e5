-- Recurly accounts: the merchant's customer id is the account `code`; a cancel page may
-- also send Recurly's own account `id` (customer_alt_id). A closed account is listed with
-- `state` inactive (and `deleted_at`): it stays, flagged is_deleted.
{% set src = source('recurly', 'customers') %}
{% set c = columns_of(src) %}
select
    'recurly' as billing_system,
    cast(code as {{ type_text() }}) as customer_id,
    cast(id as {{ type_text() }}) as customer_alt_id,
    cast({{ col(c, 'email') }} as {{ type_text() }}) as email,
    cast(nullif(trim(concat(coalesce({{ col(c, 'first_name') }}, ''), ' ', coalesce({{ col(c, 'last_name') }}, ''))), '')
        as {{ type_text() }}) as name,
    cast(created_at as {{ type_timestamptz() }}) as created_at,
    coalesce({{ col(c, 'state') }} = 'inactive', false) as is_deleted
from {{ src }}
