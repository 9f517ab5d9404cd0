/* One marketplace's daily engagement rows over a period, oldest first: the gold rows as they are. Each */
/* row's 7- and 28-day active users are distinct counts over its own window: they never add up over days. */
SELECT
  date,
  jobs,
  active_users,
  active_users_7d,
  active_users_28d,
  new_users,
  returning_users,
  jobs_per_active_user
FROM validahub.analytics.user_engagement_daily_gold
WHERE
  marketplace = :marketplace AND date BETWEEN :start_date AND :end_date
ORDER BY
  date
