{#- Custom schemas are used as named (`marts`, not `main_marts`): BI tools and
    marts.md address `marts.fct_exit_episodes` directly. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
