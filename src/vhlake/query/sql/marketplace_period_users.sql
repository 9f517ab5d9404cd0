-- The distinct users of one marketplace over a period, from silver: gold's daily active users do not add
-- up over days (a user active on two days is one user). The marketplace and created_date bounds let both
-- engines read only that marketplace's partitions of the period.
SELECT count(DISTINCT user_id) AS active_users
FROM validation_results_silver
WHERE marketplace = :marketplace
  AND created_date BETWEEN :start_date AND :end_date
