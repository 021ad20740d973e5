-- PLACEHOLDER until the chargebee price tiers are read from the raw data: no tiers.
select
    'chargebee' as billing_system,
    cast(null as varchar) as price_id,
    cast(null as varchar) as currency,
    cast(null as integer) as tier_index,
    cast(null as bigint) as up_to,
    cast(null as decimal(38, 10)) as unit_amount_local,
    cast(null as decimal(38, 10)) as flat_amount_local
where 1 = 0
