{#- Rows where `expression` is not true fail the test (a money identity, an ordering). -#}
{% test expression_is_true(model, expression) %}
select * from {{ model }} where not ({{ expression }})
{% endtest %}
