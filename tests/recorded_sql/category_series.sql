/* Per (marketplace, category) and day in [:since, :until): validations and failed validations. */
SELECT
  marketplace,
  category,
  date,
  SUM(total_validations) AS validations,
  SUM(failed_validations) AS failed
FROM validahub.analytics.marketplace_daily_metrics_gold
WHERE
  date >= :since AND date < :until
GROUP BY
  marketplace,
  category,
  date
ORDER BY
  marketplace,
  category,
  date
