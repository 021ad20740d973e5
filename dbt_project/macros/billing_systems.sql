{#- The billing systems in use, from RETENTION_BILLING_SYSTEMS (comma-separated; all three
    when unset). A company on one billing system has no raw tables of the others, so their
    staging (and sources) are disabled in dbt_project.yml by the same variable, and every
    model that unions the systems loops over this list. -#}
{% macro billing_systems() -%}
    {%- set known = ['stripe', 'recurly', 'chargebee'] -%}
    {%- set chosen = env_var('RETENTION_BILLING_SYSTEMS', 'stripe,recurly,chargebee').replace(' ', '').split(',') -%}
    {%- set unknown = chosen | reject('in', known) | list -%}
    {%- if unknown or not chosen -%}
        {{ exceptions.raise_compiler_error(
            "RETENTION_BILLING_SYSTEMS=" ~ env_var('RETENTION_BILLING_SYSTEMS', '')
            ~ ": name one or more of " ~ known | join(', ') ~ ", comma-separated") }}
    {%- endif -%}
    {{ return(known | select('in', chosen) | list) }}
{%- endmacro %}
