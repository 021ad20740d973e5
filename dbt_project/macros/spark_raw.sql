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

    A table registered over the same folder, whose folder's newest file is the one noted
    when it was registered (table property retention.newest, the file's name), is left
    as it is: no load wrote to it since. When a load did, it is refreshed (Spark re-lists
    its files) if it has every column of the new newest file, else re-created: dlt only
    adds columns, and a Delta table's newest file has them all. Re-creating every table
    made the registration 10-25 s of each dbt run (figures in the DECISIONLOG). What is
    registered is read with one `show table extended` per dataset. -#}
{% macro register_raw_tables() %}
    {%- if execute and target.type == 'spark' -%}
        {%- set lake = env_var('RETENTION_SPARK_LAKE', '../lake') | trim -%}
        {%- set lake = lake[:-1] if lake.endswith('/') else lake -%}
        {%- set landed = retention.lake_tables(lake) -%}
        {%- set datasets = {} -%}
        {%- for source in graph.sources.values() | sort(attribute='unique_id') -%}
            {%- if (source.schema ~ '/' ~ source.identifier) in landed -%}
                {%- do datasets.setdefault(source.schema, []).append(source.identifier) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- for dataset, tables in datasets | dictsort -%}
            {%- do run_query('create database if not exists ' ~ adapter.quote(dataset)) -%}
            {%- set registered = retention.registered_tables(dataset) -%}
            {%- for table in tables -%}
                {%- do retention.register_raw_table(
                    dataset, table, lake, landed[dataset ~ '/' ~ table], registered.get(table)
                ) -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endif -%}
{% endmacro %}


{#- The `<dataset>/<table>` folders under `lake` that hold parquet files, each with its
    newest file (by name among files of one time: a load writes several at once), read
    from the file listing (Spark's binaryFile source reads no file content unless asked). -#}
{% macro lake_tables(lake) %}
    {%- set listing -%}
        select regexp_extract(path, '([^/]+/[^/]+)/[^/]+[.]parquet$', 1) as folder,
               max(named_struct('at', modificationTime, 'path', path)).path as newest
        from binaryFile.`{{ lake }}/*/*/*.parquet`
        group by 1
    {%- endset -%}
    {%- set tables = {} -%}
    {%- for row in run_query(listing).rows -%}
        {%- do tables.update({row[0]: row[1]}) -%}
    {%- endfor -%}
    {{ return(tables) }}
{% endmacro %}


{#- The tables registered in `dataset`: for each, its location, its top-level columns
    and the newest file noted when it was registered or last refreshed. -#}
{% macro registered_tables(dataset) %}
    {%- set found = {} -%}
    {%- set listing = 'show table extended in ' ~ adapter.quote(dataset) ~ " like '*'" -%}
    {%- for row in run_query(listing).rows -%}
        {%- set info = row['information'] -%}
        {%- set location = modules.re.search('(?m)^Location: (.*)$', info) -%}
        {%- set newest = modules.re.search('retention[.]newest=([^,\]]*)', info) -%}
        {%- do found.update({row['tableName']: {
            'location': location.group(1) if location else none,
            'newest': newest.group(1) if newest else none,
            'columns': modules.re.findall('(?m)^ [|]-- ([^:]+):', info),
        }}) -%}
    {%- endfor -%}
    {{ return(found) }}
{% endmacro %}


{#- Registers one raw table over its folder (`registered`: how it is registered now, or
    none), or refreshes it; external, so dropping it keeps the files (Spark's session
    catalog cannot `create or replace` a parquet table). -#}
{% macro register_raw_table(dataset, table, lake, newest, registered) %}
    {%- set relation = adapter.quote(dataset) ~ '.' ~ adapter.quote(table) -%}
    {%- set location = lake ~ '/' ~ dataset ~ '/' ~ table -%}
    {#- The file's name only: Spark redacts a property value that matches
        spark.sql.redaction.options.regex, `url` by default, as in raw_recurly. -#}
    {%- set newest_name = newest.split('/')[-1] -%}
    {%- set noted = "'retention.newest' = '" ~ newest_name ~ "'" -%}
    {%- set same_place = registered is not none and registered.location is not none
        and retention.without_scheme(registered.location) == retention.without_scheme(location) -%}
    {%- if same_place and registered.newest == newest_name -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if same_place -%}
        {%- set wanted = run_query('select * from parquet.`' ~ newest ~ '` limit 0').column_names -%}
        {%- if (wanted | reject('in', registered.columns) | list | length) == 0 -%}
            {%- do run_query('refresh table ' ~ relation) -%}
            {%- do run_query('alter table ' ~ relation ~ ' set tblproperties (' ~ noted ~ ')') -%}
            {{ return(none) }}
        {%- endif -%}
    {%- endif -%}
    {%- set format = var('spark_raw_format', 'parquet') -%}
    {%- do run_query('drop table if exists ' ~ relation) -%}
    {%- do run_query(
        'create table ' ~ relation ~ ' using ' ~ format
        ~ (" options (mergeSchema 'true')" if format == 'parquet' else '')
        ~ " location '" ~ location ~ "' tblproperties (" ~ noted ~ ")"
    ) -%}
{% endmacro %}


{#- A path without its scheme: Spark shows a local folder as file:/... -#}
{% macro without_scheme(path) %}
    {{ return(path.split(':', 1)[-1].lstrip('/').rstrip('/')) }}
{% endmacro %}
