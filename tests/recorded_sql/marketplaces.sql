/* The marketplaces in gold, with their first and last day of data and their validations. */
SELECT
  marketplace,
  MIN(date) AS first_date,
  MAX(date) AS last_date,
  SUM(total_validations) AS total_validations
FROM validahub.analytics.marketplace_daily_metrics_gold
GROUP BY
  marketplace
ORDER BY
  total_validations DESC,
  marketplace
