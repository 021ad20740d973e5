{#- On Spark, the raw tables dlt lands as Delta under the lake (RETENTION_SPARK_LAKE,
    orchestration/spark.py) become metastore tables <dataset>.<table>, so the models read
    them with source() as on DuckDB and Postgres. Run as an on-run-start hook: a table
    that first appears, or a column a later load added, is seen by the next dbt run.

    Registered `using parquet` with mergeSchema (files written before a new column lack
    it) by default: it needs no jars, and is correct because the loads vacuum each table
    (no replaced file stays in the folder). `--vars '{spark_raw_format: delta}'` where the
    cluster has the Delta jars. Only the tables the project declares as sources are
    registered (graph.sources: dlt's own tables stay out), and only those whose folder
    holds data files (a table never loaded has no schema to read).

    A table registered over the same folder with every column of the lake's newest file
    is kept and refreshed (Spark re-lists its files), not re-created: re-creating every
    table made each dbt run 26-52 s longer. Columns are only ever added (dlt evolves
    schemas by adding), and the newest file of a Delta table has every column, so a
    column the registration lacks means re-create. -#}
{% macro register_raw_tables() %}
    {%- if execute and target.type == 'spark' -%}
        {%- set lake = env_var('RETENTION_SPARK_LAKE', '../lake') | trim -%}
        {%- set lake = lake[:-1] if lake.endswith('/') else lake -%}
        {%- set landed = retention.lake_tables(lake) -%}
        {%- for source in graph.sources.values() | sort(attribute='unique_id') -%}
            {%- set folder = source.schema ~ '/' ~ source.identifier -%}
            {%- if folder in landed -%}
                {%- do retention.register_raw_table(
                    source.schema, source.identifier, lake, landed[folder]
                ) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{% endmacro %}


{#- The `<dataset>/<table>` folders under `lake` that hold parquet files, each with its
    newest file, read from the file listing (Spark's binaryFile source reads no file
    content unless asked). -#}
{% macro lake_tables(lake) %}
    {%- set listing -%}
        select regexp_extract(path, '([^/]+/[^/]+)/[^/]+[.]parquet$', 1) as folder,
               max_by(path, modificationTime) as newest
        from binaryFile.`{{ lake }}/*/*/*.parquet`
        group by 1
    {%- endset -%}
    {%- set tables = {} -%}
    {%- for row in run_query(listing).rows -%}
        {%- do tables.update({row[0]: row[1]}) -%}
    {%- endfor -%}
    {{ return(tables) }}
{% endmacro %}


{#- Registers one raw table over its folder, or refreshes it when its registration is
    current; external, so dropping it keeps the files (Spark's session catalog cannot
    `create or replace` a parquet table). -#}
{% macro register_raw_table(dataset, table, lake, newest) %}
    {%- set relation = adapter.quote(dataset) ~ '.' ~ adapter.quote(table) -%}
    {%- set location = lake ~ '/' ~ dataset ~ '/' ~ table -%}
    {%- set format = var('spark_raw_format', 'parquet') -%}
    {%- do run_query('create database if not exists ' ~ adapter.quote(dataset)) -%}
    {%- if retention.raw_table_current(relation, dataset, table, location, newest) -%}
        {%- do run_query('refresh table ' ~ relation) -%}
    {%- else -%}
        {%- do run_query('drop table if exists ' ~ relation) -%}
        {%- do run_query(
            'create table ' ~ relation ~ ' using ' ~ format
            ~ (" options (mergeSchema 'true')" if format == 'parquet' else '')
            ~ " location '" ~ location ~ "'"
        ) -%}
    {%- endif -%}
{% endmacro %}


{#- Whether `relation` is registered over `location` with every column of `newest`, the
    folder's newest file. Locations compare without their scheme (Spark shows a local
    folder as file:/...). -#}
{% macro raw_table_current(relation, dataset, table, location, newest) %}
    {%- set found = run_query(
        'show tables in ' ~ adapter.quote(dataset) ~ " like '" ~ table ~ "'"
    ) -%}
    {%- if found.rows | length == 0 -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set described = namespace(columns=[], location=none, in_columns=true) -%}
    {%- for row in run_query('describe table extended ' ~ relation).rows -%}
        {%- if row[0] == '' or row[0].startswith('#') -%}
            {%- set described.in_columns = false -%}
        {%- elif described.in_columns -%}
            {%- do described.columns.append(row[0]) -%}
        {%- elif row[0] == 'Location' -%}
            {%- set described.location = row[1] -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set wanted = run_query('select * from parquet.`' ~ newest ~ '` limit 0').column_names -%}
    {%- set same_place = described.location is not none
        and retention.without_scheme(described.location) == retention.without_scheme(location) -%}
    {{ return(same_place and (wanted | reject('in', described.columns) | list | length) == 0) }}
{% endmacro %}


{% macro without_scheme(path) %}
    {{ return(path.split(':', 1)[-1].lstrip('/').rstrip('/')) }}
{% endmacro %}
