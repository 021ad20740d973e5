{#- Helpers for staging models over raw API tables. -#}

{#- The columns a raw table has now (lower-case). APIs omit fields that are null on every
    record, and dlt only adds a column once a value arrives, so staging must not assume a
    column exists. Empty at parse time, and for a table that may not exist yet
    (`required=false`, with raw_or_empty). -#}
{% macro columns_of(relation, required=true) -%}
    {%- if not execute -%}{{ return([]) }}{%- endif -%}
    {%- set found = adapter.get_relation(relation.database, relation.schema, relation.identifier) -%}
    {%- if found is none and not required -%}{{ return([]) }}{%- endif -%}
    {%- if found is none -%}
        {{ exceptions.raise_compiler_error(
            "raw table " ~ relation ~ " does not exist: load it first (retention extract, or the dlt asset in Dagster)") }}
    {%- endif -%}
    {{ return(adapter.get_columns_in_relation(found) | map(attribute='name') | map('lower') | list) }}
{%- endmacro %}

{#- `name` if the raw table has that column, else a typed null (text unless `type` says). -#}
{% macro col(columns, name, type=none) -%}
    {%- if not execute or name | lower in columns -%}{{ name }}
    {%- else -%}cast(null as {{ type or retention.type_text() }})
    {%- endif -%}
{%- endmacro %}

{#- Minor units to major-unit decimals, per billing system as each vendor documents its
    currencies. Stripe (ISO 4217): sixteen zero-decimal currencies unchanged, the five
    three-decimal ones ÷ 1000, others ÷ 100. Chargebee: only JPY, KRW, XAF and XOF unchanged,
    every other currency (three-decimal ones included) ÷ 100. One division at money's
    declared precision (divide_once, macros/walk.sql): DuckDB computes a decimal's `/` as a
    double (12345678901234 cents came out as 123456789012.3399888896), so only that macro
    gives the same digits on every engine. -#}
{% macro minor_to_major(amount, currency, system) -%}
    {{ retention.divide_once(amount, retention.minor_unit_divisor(currency, system)) }}
{%- endmacro %}

{#- How many minor units make one major unit of `currency` under `system`'s rules (1, 100
    or 1000): the one home of the pipeline's currency exponents (tests/unit/
    test_currency_exponents.py holds them against the emulators'). -#}
{% macro minor_unit_divisor(currency, system) -%}
    {%- set zero_decimal = {
        'stripe': ['BIF', 'CLP', 'DJF', 'GNF', 'JPY', 'KMF', 'KRW', 'MGA',
                   'PYG', 'RWF', 'UGX', 'VND', 'VUV', 'XAF', 'XOF', 'XPF'],
        'chargebee': ['JPY', 'KRW', 'XAF', 'XOF'],
    } -%}
    {%- set three_decimal = {'stripe': ['BHD', 'JOD', 'KWD', 'OMR', 'TND'], 'chargebee': []} -%}
    {%- if system is not defined or system not in zero_decimal -%}
        {{ exceptions.raise_compiler_error(
            "minor_to_major(amount, currency, system): system must be one of "
            ~ zero_decimal.keys() | list ~ ", got " ~ system) }}
    {%- endif -%}
    case
        when upper({{ currency }}) in ('{{ zero_decimal[system] | join("', '") }}') then 1
        {%- if three_decimal[system] %}
        when upper({{ currency }}) in ('{{ three_decimal[system] | join("', '") }}') then 1000
        {%- endif %}
        else 100
    end
{%- endmacro %}

{#- Whether a relation exists in the warehouse now (false at parse time): for sources
    that another tool creates on first use, such as the write-back ledger. -#}
{% macro relation_exists(relation) -%}
    {%- if not execute -%}{{ return(false) }}{%- endif -%}
    {#- A dbt unit test's fixture is a CTE (no schema): it stands in for the table. -#}
    {%- if relation.schema is none -%}{{ return(true) }}{%- endif -%}
    {{ return(adapter.get_relation(relation.database, relation.schema, relation.identifier) is not none) }}
{%- endmacro %}


{#- A raw table that an account may never have had a row of (no coupon ever made, no
    invoice yet): dlt creates a table with its first row, so until then the model reads an
    empty relation with the columns it names directly (the others go through col()). -#}
{% macro raw_or_empty(relation, columns) -%}
    {%- if relation_exists(relation) or not execute -%}{{ relation }}
    {%- else -%}(select {% for name in columns %}cast(null as {{ retention.type_text() }}) as {{ name }}{{ ", " if not loop.last }}{% endfor %} where 1 = 0) as {{ relation.identifier }}
    {%- endif -%}
{%- endmacro %}
