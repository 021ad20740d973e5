-- The enrichment profile per subscription (validation.md §7): fields chosen by the
-- `subscriber_profile_fields` mapping, so pages and audiences can be personalised.
select
    s.billing_system,
    s.subscription_id,
    s.customer_id,
    {{ profile_columns() }}
from {{ ref('int_subscriptions') }} as s
left join {{ ref('int_customers') }} as c
    on c.billing_system = s.billing_system and c.customer_id = s.customer_id
