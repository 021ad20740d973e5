{#- The enrichment profile's field mapping (validation.md §7). Users name each profile
    column by a payload path; the paths are Stripe's names (the de-facto vocabulary of
    cancel-flow tools) and resolve to the conformed columns of every billing system.
    Both generations of Stripe's names are accepted: the pre-2025 ones cancel-flow tools
    still document (`subscription.plan.id`, `subscription.current_period_end`,
    `subscription.discount.coupon.id`) and those of the API version we read (2026-10-28:
    the plan and periods on the subscription's items, the coupon in `discounts`), where
    `items.data.0` means the subscription's plan item, whatever its position.
    Edit the var `subscriber_profile_fields` in dbt_project.yml (column: path). -#}

{% macro profile_paths() -%}
    {{ return({
        'customer.email': 'c.email',
        'customer.name': 'c.name',
        'customer.id': 's.customer_id',
        'customer.created': 'c.created_at',
        'subscription.id': 's.subscription_id',
        'subscription.status': 's.status',
        'subscription.quantity': 's.quantity',
        'subscription.created': 's.created_at',
        'subscription.start_date': 's.activated_at',
        'subscription.current_period_start': 's.current_period_start',
        'subscription.current_period_end': 's.current_period_end',
        'subscription.trial_start': 's.trial_start',
        'subscription.trial_end': 's.trial_end',
        'subscription.canceled_at': 's.canceled_at',
        'subscription.ended_at': 's.ended_at',
        'subscription.pause_collection.resumes_at': 's.resumes_at',
        'subscription.discount.coupon.id': 's.coupon_id',
        'subscription.plan.id': 's.plan_id',
        'subscription.plan.amount': 's.unit_amount_local',
        'subscription.plan.currency': 's.currency',
        'subscription.plan.interval': 's.' ~ adapter.quote('interval'),
        'subscription.plan.interval_count': 's.interval_count',
        'subscription.plan.product.id': 's.product_id',
        'subscription.plan.product.name': 's.product_name',
        'subscription.mrr': 's.mrr',
        'subscription.currency': 's.currency',
        'subscription.discounts.0.source.coupon': 's.coupon_id',
        'subscription.items.data.0.quantity': 's.quantity',
        'subscription.items.data.0.current_period_start': 's.current_period_start',
        'subscription.items.data.0.current_period_end': 's.current_period_end',
        'subscription.items.data.0.price.id': 's.plan_id',
        'subscription.items.data.0.price.unit_amount': 's.unit_amount_local',
        'subscription.items.data.0.price.currency': 's.currency',
        'subscription.items.data.0.price.recurring.interval': 's.' ~ adapter.quote('interval'),
        'subscription.items.data.0.price.recurring.interval_count': 's.interval_count',
        'subscription.items.data.0.price.product': 's.product_id',
        'subscription.items.data.0.price.product.name': 's.product_name',
    }) }}
{%- endmacro %}

{% macro profile_columns() -%}
    {%- set paths = retention.profile_paths() -%}
    {%- set fields = var('subscriber_profile_fields') -%}
    {%- for column, path in fields.items() -%}
        {%- if path not in paths -%}
            {{ exceptions.raise_compiler_error(
                "subscriber_profile_fields." ~ column ~ ": unknown payload path '" ~ path
                ~ "'. Known paths: " ~ (paths.keys() | sort | join(", "))) }}
        {%- endif %}
    {{ paths[path] }} as {{ adapter.quote(column) if column != column | lower else column }}
        {%- if not loop.last %},{% endif %}
    {%- endfor -%}
{%- endmacro %}
