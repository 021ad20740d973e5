{#- The episode walk and the money arithmetic, behind adapter.dispatch, so DuckDB, Postgres
    and Spark give the same rows and the same digits (#15). -#}

{#- The start time of every episode (validation.md §2), one row per (billing_system,
    billing_id, episode_start), from `visits` (a relation or CTE with billing_system,
    billing_id, started_at). An episode opens at a billing id's first visit; the first
    visit at or after its start + `days` opens the next. The rule is sequential, so each
    billing id's visit times are folded in order; where the engine has an array fold
    (DuckDB, Spark) the fold is one expression per billing id, whatever its number of
    visits: a recursive walk runs one step per visit, and Spark caps recursion at 100
    levels and runs a job per level. The fold keeps the starts so far; the last is the
    open episode's. -#}
{% macro episode_starts(visits, days) -%}
    {{ return(adapter.dispatch('episode_starts', 'retention')(visits, days)) }}
{%- endmacro %}

{#- Postgres has no array fold without a custom aggregate, and no depth cap on a
    recursive walk: it walks the visits in order. -#}
{% macro default__episode_starts(visits, days) -%}
    with recursive numbered as (
        select
            billing_system,
            billing_id,
            started_at,
            row_number() over (partition by billing_system, billing_id order by started_at) as visit_number
        from {{ visits }}
    ),

    walk as (
        select billing_system, billing_id, visit_number, started_at as episode_start
        from numbered
        where visit_number = 1

        union all

        select
            n.billing_system,
            n.billing_id,
            n.visit_number,
            case
                when n.started_at >= {{ retention.add_days('w.episode_start', days) }} then n.started_at
                else w.episode_start
            end as episode_start
        from walk as w
        inner join numbered as n
            on n.billing_system = w.billing_system
            and n.billing_id = w.billing_id
            and n.visit_number = w.visit_number + 1
    )

    select distinct billing_system, billing_id, episode_start from walk
{%- endmacro %}

{% macro duckdb__episode_starts(visits, days) -%}
    select billing_system, billing_id, unnest(starts) as episode_start
    from (
        select
            billing_system,
            billing_id,
            list_reduce(
                list(started_at order by started_at),
                lambda acc, visit_at: case
                    when visit_at >= {{ retention.add_days('acc[-1]', days) }} then list_append(acc, visit_at)
                    else acc
                end,
                [min(started_at)]
            ) as starts
        from {{ visits }}
        group by billing_system, billing_id
    ) as folded
{%- endmacro %}

{% macro spark__episode_starts(visits, days) -%}
    select billing_system, billing_id, explode(starts) as episode_start
    from (
        select
            billing_system,
            billing_id,
            aggregate(
                array_sort(collect_list(started_at)),
                array(min(started_at)),
                (acc, visit_at) -> case
                    when visit_at >= {{ retention.add_days('element_at(acc, -1)', days) }}
                        then concat(acc, array(visit_at))
                    else acc
                end
            ) as starts
        from {{ visits }}
        group by billing_system, billing_id
    ) as folded
{%- endmacro %}

{#- Money arithmetic that multiplies first and divides once, at one declared precision, so
    every engine gives the same digits. Each engine types decimal arithmetic its own way:
    Spark cuts a product or quotient wider than 38 digits to scale 6, DuckDB divides
    decimals as doubles, Postgres keeps every digit. An exact product of operands typed
    small enough, then one division rounded once, is the same number everywhere. -#}

{#- amount × factor, exactly, as decimal(38, 20): an amount of up to 12 integer digits
    (a trillion of a currency's major units) and a factor (an exchange rate, a months
    numerator) of up to 5, both to 10 decimals. The product of the two types is
    decimal(38, 20) under every engine's rules, so none rounds it. A larger value fails
    the cast (Spark with ANSI off: null). -#}
{% macro money_times(amount, factor) -%}
    (cast({{ amount }} as {{ retention.type_decimal(22, 10) }})
        * cast({{ factor }} as {{ retention.type_decimal(15, 10) }}))
{%- endmacro %}

{#- unit amount × a count of units or packages (+ an amount, such as a tier's flat fee),
    exactly, as decimal(38, 10): a unit amount of up to 13 integer digits and a count of up
    to 13, the product typed decimal(37, 10) so that adding one more amount stays within
    38 digits (Spark cuts decimal(38, 10) × an integer to scale 6, and the sum of two
    decimal(38, 10) to scale 9). -#}
{% macro units_amount(unit_amount, units, plus=none) -%}
    (cast({{ unit_amount }} as {{ retention.type_decimal(23, 10) }})
        * cast({{ units }} as {{ retention.type_decimal(13, 0) }})
        {%- if plus is not none %} + cast({{ plus }} as {{ retention.type_decimal(37, 10) }}){% endif %})
{%- endmacro %}

{#- numerator ÷ denominator as decimal(38, 10), rounded once, half away from zero.
    The numerator (up to 18 integer digits, up to 20 decimals: a money_times product, a
    count) is divided at scale 20, then cast to scale 10: a quotient's distance from a
    half at the 10th decimal is at least 1 / (denominator × 10^10), so the 20-digit step
    never moves the final rounding while the denominator (an integer: 12 × an interval
    count, a count of episodes) stays below 10^9. -#}
{% macro divide_once(numerator, denominator) -%}
    {{ return(adapter.dispatch('divide_once', 'retention')(numerator, denominator)) }}
{%- endmacro %}

{#- Postgres divides numeric to at least the dividend's scale; Spark types
    decimal(38, 20) ÷ an integer as decimal(38, 20), rounding half up. -#}
{% macro default__divide_once(numerator, denominator) -%}
    cast(cast({{ numerator }} as {{ retention.type_decimal(38, 20) }})
        / cast({{ denominator }} as {{ retention.type_decimal(18, 0) }})
        as {{ retention.type_decimal() }})
{%- endmacro %}

{#- DuckDB's `/` on decimals is a double division; decimal_division is exact at the scale
    asked (it rounds half to even there, which scale 20 makes harmless; the cast rounds
    half away from zero, as Postgres and Spark do). DuckDB 2.0.0's decimal_division
    returns garbage for a HUGEINT divisor (a sum of integers: 1 ÷ 1 gave 1.2e17), hence
    the divisor's cast to decimal(18, 0) on every engine. -#}
{% macro duckdb__divide_once(numerator, denominator) -%}
    cast(decimal_division(
            cast({{ numerator }} as {{ retention.type_decimal(38, 20) }}),
            cast({{ denominator }} as {{ retention.type_decimal(18, 0) }}),
            20
        )
        as {{ retention.type_decimal() }})
{%- endmacro %}

{#- Contract types on Spark. The marts' YAML declares the types DuckDB and Postgres use
    (`varchar`, `timestamp with time zone`; marts.md), which Spark rejects. dbt checks a
    contract by casting null to each declared type through dbt.cast (a root project's
    `spark__cast` comes before dbt's own), so on Spark those two names become the type
    macros' `string` and `timestamp`; every other type name passes as written. -#}
{% macro spark__cast(field, type) -%}
    {%- set spark_types = {
        'varchar': retention.type_text(),
        'timestamp with time zone': retention.type_timestamptz(),
    } -%}
    cast({{ field }} as {{ spark_types.get(type | trim | lower, type) }})
{%- endmacro %}
