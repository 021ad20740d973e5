-- validation.md §3: each episode's subscription. A billing id that is a subscription id
-- of its system is that subscription; else, if it is a customer id (or a Recurly
-- account id), the customer's subscription in service at S (highest MRR, then latest
-- activated, then smallest id); else the latest activated before S (then smallest id);
-- else the earliest activated after S (then smallest id). Otherwise no match.
with episodes as (
    select episode_id, billing_system, billing_id, first_landed_at
    from {{ ref('int_exit_episodes') }}
),

subscriptions as (
    select billing_system, subscription_id, customer_id, activated_at, ended_at, mrr
    from {{ ref('int_subscriptions') }}
),

by_subscription as (
    select e.episode_id, s.subscription_id
    from episodes as e
    inner join subscriptions as s
        on s.billing_system = e.billing_system and s.subscription_id = e.billing_id
),

-- The ids a customer with subscriptions is known by: its own id (as its subscriptions
-- carry it; a customer without subscriptions has no candidate anyway) and a second id
-- (Recurly: the account id beside the code). `union all`: a repeated (id, customer) only
-- repeats a candidate row, and the ranking below keeps one of identical rows.
customer_ids as (
    select billing_system, customer_id, customer_id as lookup_id from subscriptions
    union all
    select billing_system, customer_id, customer_alt_id from {{ ref('int_customers') }}
    where customer_alt_id is not null
),

candidates as (
    select
        e.episode_id,
        s.subscription_id,
        case
            when s.activated_at <= e.first_landed_at
                and (s.ended_at is null or s.ended_at > e.first_landed_at) then 1
            when s.activated_at <= e.first_landed_at then 2
            else 3
        end as tier,
        s.mrr,
        s.activated_at
    from episodes as e
    inner join customer_ids as c
        on c.billing_system = e.billing_system and c.lookup_id = e.billing_id
    inner join subscriptions as s
        on s.billing_system = c.billing_system and s.customer_id = c.customer_id
    where not exists (select 1 from by_subscription as b where b.episode_id = e.episode_id)
),

by_customer as (
    select episode_id, subscription_id
    from (
        select
            episode_id,
            subscription_id,
            row_number() over (
                partition by episode_id
                order by
                    tier,
                    case when tier = 1 then mrr end desc nulls last,
                    case when tier in (1, 2) then activated_at end desc nulls last,
                    case when tier = 3 then activated_at end asc nulls last,
                    subscription_id
            ) as pick
        from candidates
    ) as ranked
    where pick = 1
)

select episode_id, subscription_id, 'subscription_id' as matched_by from by_subscription
union all
select episode_id, subscription_id, 'customer_id' as matched_by from by_customer
