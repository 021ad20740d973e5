-- Stripe customers, deleted ones included (is_deleted): the source keeps a deleted customer
-- as its `customer.deleted` event carried it (`deleted = true`). A customer deleted before
-- the first sync's 30-day event window is beyond every API (lists omit it, a retrieve
-- answers a bare stub): the subscriptions and invoices that still name it give it a row,
-- deleted, with no e-mail, name or creation time. (An account that never invoiced has no
-- invoices table: dlt creates a table with its first row.)
{% set src = source('stripe', 'customers') %}
{% set c = columns_of(src) %}
with listed as (
    select
        cast(id as {{ type_text() }}) as customer_id,
        cast({{ col(c, 'email') }} as {{ type_text() }}) as email,
        cast({{ col(c, 'name') }} as {{ type_text() }}) as name,
        {{ from_epoch(col(c, 'created', 'bigint')) }} as created_at,
        coalesce(cast({{ col(c, 'deleted', 'boolean') }} as boolean), false) as is_deleted
    from {{ src }}
),

named as (
    select cast(customer as {{ type_text() }}) as customer_id from {{ source('stripe', 'subscriptions') }}
    {% if relation_exists(source('stripe', 'invoices')) %}
    union
    select cast(customer as {{ type_text() }}) from {{ source('stripe', 'invoices') }}
    {% endif %}
),

unlisted as (
    select
        named.customer_id,
        cast(null as {{ type_text() }}) as email,
        cast(null as {{ type_text() }}) as name,
        cast(null as {{ type_timestamptz() }}) as created_at,
        true as is_deleted
    from named
    where named.customer_id is not null
        and named.customer_id not in (select customer_id from listed)
)

select
    'stripe' as billing_system,
    customer_id,
    cast(null as {{ type_text() }}) as customer_alt_id,
    email,
    name,
    created_at,
    is_deleted
from (
    select * from listed
    union all
    select * from unlisted
) as customers
