{#- Every dialect difference the models need, behind adapter.dispatch, so the same
    models run on DuckDB (default), Postgres and Spark. -#}

{#- Column types. DuckDB and Postgres keep the names the models always used (`varchar`,
    `timestamp with time zone`), so their tables and contracts are unchanged; Spark rejects
    both (`varchar` needs a length there) and has `string` and `timestamp` (an instant,
    shown in the session's time zone, which is UTC). -#}
{% macro type_text() -%}
    {{ return(adapter.dispatch('type_text', 'retention')()) }}
{%- endmacro %}
{% macro default__type_text() -%}
    varchar
{%- endmacro %}
{% macro spark__type_text() -%}
    string
{%- endmacro %}

{% macro type_timestamptz() -%}
    {{ return(adapter.dispatch('type_timestamptz', 'retention')()) }}
{%- endmacro %}
{% macro default__type_timestamptz() -%}
    timestamp with time zone
{%- endmacro %}
{% macro spark__type_timestamptz() -%}
    timestamp
{%- endmacro %}

{#- A binary floating-point number (only for epoch seconds; money is type_decimal). -#}
{% macro type_float() -%}
    {{ return(adapter.dispatch('type_float', 'retention')()) }}
{%- endmacro %}
{% macro default__type_float() -%}
    double precision
{%- endmacro %}
{% macro duckdb__type_float() -%}
    double
{%- endmacro %}
{% macro spark__type_float() -%}
    double
{%- endmacro %}

{#- The one home of money's precision: amounts are decimal(38, 10) on every engine. -#}
{% macro type_decimal(precision=38, scale=10) -%}
    decimal({{ precision }}, {{ scale }})
{%- endmacro %}

{#- A timestamptz as a UTC wall-clock timestamp: calendar math (months, offsets) must not
    depend on the session's time zone. -#}
{% macro utc(ts) -%}
    {{ return(adapter.dispatch('utc', 'retention')(ts)) }}
{%- endmacro %}
{% macro default__utc(ts) -%}
    ({{ ts }} at time zone 'UTC')
{%- endmacro %}
{#- Spark shows a timestamp in the session's zone (UTC by our profile); shifting it by
    that zone's offset gives the UTC wall clock whatever the session says. -#}
{% macro spark__utc(ts) -%}
    to_utc_timestamp({{ ts }}, current_timezone())
{%- endmacro %}

{#- ts + n days (n may be an expression), a day being exactly 24 hours (validation.md:
    "30 days" is 30 × 24 hours). Not calendar days: those follow the session's time zone,
    and across a daylight-saving change would be 23 or 25 hours. -#}
{% macro add_days(ts, days) -%}
    {{ return(adapter.dispatch('add_days', 'retention')(ts, days)) }}
{%- endmacro %}
{% macro default__add_days(ts, days) -%}
    ({{ ts }} + ({{ days }}) * interval '24 hours')
{%- endmacro %}
{% macro duckdb__add_days(ts, days) -%}
    ({{ ts }} + to_hours(cast(({{ days }}) * 24 as bigint)))
{%- endmacro %}
{#- On the epoch's microseconds: Spark adds an interval on the session zone's wall clock. -#}
{% macro spark__add_days(ts, days) -%}
    timestamp_micros(unix_micros({{ ts }}) + cast(({{ days }}) * 24 as bigint) * 3600000000)
{%- endmacro %}

{#- Epoch seconds to timestamptz. -#}
{% macro from_epoch(col) -%}
    {{ return(adapter.dispatch('from_epoch', 'retention')(col)) }}
{%- endmacro %}
{% macro default__from_epoch(col) -%}
    to_timestamp(cast({{ col }} as double precision))
{%- endmacro %}
{% macro duckdb__from_epoch(col) -%}
    to_timestamp(cast({{ col }} as double))
{%- endmacro %}
{% macro spark__from_epoch(col) -%}
    timestamp_seconds(cast({{ col }} as double))
{%- endmacro %}

{#- One text value out of JSON text at a path given as a list of keys / array indexes. -#}
{% macro json_text(col, path) -%}
    {{ return(adapter.dispatch('json_text', 'retention')(col, path)) }}
{%- endmacro %}
{% macro default__json_text(col, path) -%}
    (cast({{ col }} as jsonb) #>> '{ {{- path | join(",") -}} }')
{%- endmacro %}
{% macro duckdb__json_text(col, path) -%}
    json_extract_string({{ col }}, '{{ retention.json_path(path) }}')
{%- endmacro %}
{#- get_json_object gives a string as its text and an object or array as JSON text, as
    DuckDB's json_extract_string does. -#}
{% macro spark__json_text(col, path) -%}
    get_json_object({{ col }}, '{{ retention.json_path(path) }}')
{%- endmacro %}

{#- Several text values out of one JSON text, as a list read with json_texts_at(list, i)
    (i: the path's 1-based position). DuckDB parses the text once for all the paths, where
    json_text per path parses it again each time (the costliest part of reading the
    items). Postgres reads a jsonb value, parsed already; Spark parses per path. -#}
{% macro json_texts(col, paths) -%}
    {{ return(adapter.dispatch('json_texts', 'retention')(col, paths)) }}
{%- endmacro %}
{% macro default__json_texts(col, paths) -%}
    array[
    {%- for path in paths %}
        {{ retention.json_text(col, path) }}{{ "," if not loop.last }}
    {%- endfor %}
    ]
{%- endmacro %}
{% macro duckdb__json_texts(col, paths) -%}
    json_extract_string({{ col }}, [
    {%- for path in paths %}
        '{{ retention.json_path(path) }}'{{ "," if not loop.last }}
    {%- endfor %}
    ])
{%- endmacro %}
{% macro spark__json_texts(col, paths) -%}
    array(
    {%- for path in paths %}
        {{ retention.json_text(col, path) }}{{ "," if not loop.last }}
    {%- endfor %}
    )
{%- endmacro %}

{% macro json_texts_at(list, i) -%}
    {{ return(adapter.dispatch('json_texts_at', 'retention')(list, i)) }}
{%- endmacro %}
{% macro default__json_texts_at(list, i) -%}
    {{ list }}[{{ i }}]
{%- endmacro %}
{#- Spark's [] is 0-based; element_at is 1-based. -#}
{% macro spark__json_texts_at(list, i) -%}
    element_at({{ list }}, {{ i }})
{%- endmacro %}

{#- A key path as a JSONPath (`$.price.id`, `$[0].amount`), which DuckDB and Spark read. -#}
{% macro json_path(path) -%}
    $
    {%- for key in path -%}
        {%- if key is number or (key is string and key.isdigit()) -%}[{{ key }}]{%- else -%}.{{ key }}{%- endif -%}
    {%- endfor -%}
{%- endmacro %}

{#- Whole calendar months from the month of `start` to the month of `stop` (UTC). -#}
{% macro month_offset(start, stop) -%}
    cast(
        (extract(year from {{ retention.utc(stop) }}) - extract(year from {{ retention.utc(start) }})) * 12
        + extract(month from {{ retention.utc(stop) }}) - extract(month from {{ retention.utc(start) }})
    as integer)
{%- endmacro %}

{#- First day of the UTC month of a timestamptz, as a date. -#}
{% macro month_start(ts) -%}
    cast(date_trunc('month', {{ retention.utc(ts) }}) as date)
{%- endmacro %}

{#- 0..n as a table of `month_offset`. -#}
{% macro offsets_upto(n) -%}
    {{ return(adapter.dispatch('offsets_upto', 'retention')(n)) }}
{%- endmacro %}
{% macro default__offsets_upto(n) -%}
    (select cast(g as integer) as month_offset from generate_series(0, {{ n }}) as g)
{%- endmacro %}
{% macro duckdb__offsets_upto(n) -%}
    (select cast(generate_series as integer) as month_offset from generate_series(0, {{ n }}))
{%- endmacro %}
{% macro spark__offsets_upto(n) -%}
    (select cast(g as integer) as month_offset from (select explode(sequence(0, {{ n }})) as g))
{%- endmacro %}

{#- A JSON-text array column as rows, for a FROM clause: `from t cross join
    {{ json_elements('t.items', 'e') }}` gives `e.value` (the element, as JSON; read it
    with json_text) and `e.idx` (its 1-based position). A null or empty array gives no
    row. Billing APIs nest lists (subscription items, tiers, discounts, add-ons) that dlt
    keeps as one JSON text column each. -#}
{% macro json_elements(col, alias) -%}
    {{ return(adapter.dispatch('json_elements', 'retention')(col, alias)) }}
{%- endmacro %}
{% macro default__json_elements(col, alias) -%}
    lateral jsonb_array_elements(cast({{ col }} as jsonb)) with ordinality as {{ alias }}(value, idx)
{%- endmacro %}
{% macro duckdb__json_elements(col, alias) -%}
    lateral (select value, cast(key as integer) + 1 as idx from json_each({{ col }})) as {{ alias }}(value, idx)
{%- endmacro %}
{#- Each element as JSON text (from_json to array<string> keeps an object or array
    element as its JSON text); posexplode's position is 0-based. -#}
{% macro spark__json_elements(col, alias) -%}
    lateral (
        select col as value, pos + 1 as idx from posexplode(from_json({{ col }}, 'array<string>'))
    ) as {{ alias }}
{%- endmacro %}
