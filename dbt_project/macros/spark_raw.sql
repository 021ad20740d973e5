{#- On Spark, the raw tables dlt lands as Delta under the lake (RETENTION_SPARK_LAKE,
    orchestration/spark.py) become metastore tables <dataset>.<table>, so the models read
    them with source() as on DuckDB and Postgres. Run as an on-run-start hook: a table
    that first appears, or a column a later load added, is seen by the next dbt run.

    Registered `using parquet` with mergeSchema (files written before a new column lack
    it) by default: it needs no jars, and is correct because the loads vacuum each table
    (no replaced file stays in the folder). `--vars '{spark_raw_format: delta}'` where the
    cluster has the Delta jars. Only the tables the project declares as sources are
    registered (graph.sources: dlt's own tables stay out), and only those whose folder
    holds data files (a table never loaded has no schema to read). -#}
{% macro register_raw_tables() %}
    {%- if execute and target.type == 'spark' -%}
        {%- set lake = env_var('RETENTION_SPARK_LAKE', '../lake') | trim -%}
        {%- set lake = lake[:-1] if lake.endswith('/') else lake -%}
        {%- set landed = retention.lake_tables(lake) -%}
        {%- for source in graph.sources.values() | sort(attribute='unique_id') -%}
            {%- if (source.schema ~ '/' ~ source.identifier) in landed -%}
                {%- do retention.register_raw_table(source.schema, source.identifier, lake) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{% endmacro %}


{#- The `<dataset>/<table>` folders under `lake` that hold parquet files, read from the
    file listing (Spark's binaryFile source reads no file content unless asked). -#}
{% macro lake_tables(lake) %}
    {%- set listing -%}
        select distinct regexp_extract(path, '([^/]+/[^/]+)/[^/]+[.]parquet$', 1) as folder
        from binaryFile.`{{ lake }}/*/*/*.parquet`
    {%- endset -%}
    {{ return(run_query(listing).columns[0].values()) }}
{% endmacro %}


{#- (Re)creates one raw table over its folder; external, so dropping it keeps the files
    (Spark's session catalog cannot `create or replace` a parquet table). -#}
{% macro register_raw_table(dataset, table, lake) %}
    {%- set relation = adapter.quote(dataset) ~ '.' ~ adapter.quote(table) -%}
    {%- set format = var('spark_raw_format', 'parquet') -%}
    {%- do run_query('create database if not exists ' ~ adapter.quote(dataset)) -%}
    {%- do run_query('drop table if exists ' ~ relation) -%}
    {%- do run_query(
        'create table ' ~ relation ~ ' using ' ~ format
        ~ (" options (mergeSchema 'true')" if format == 'parquet' else '')
        ~ " location '" ~ lake ~ '/' ~ dataset ~ '/' ~ table ~ "'"
    ) -%}
{% endmacro %}
