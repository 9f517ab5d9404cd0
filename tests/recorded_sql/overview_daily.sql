/* Every marketplace's daily validations and failures (all categories) between two dates, from gold: the */
/* overview sums them per period (so a period's error rate is its failures over its validations, not a */
/* mean of daily rates) and draws each day as a sparkline point. */
SELECT
  marketplace,
  date,
  SUM(total_validations) AS total_validations,
  SUM(failed_validations) AS failed_validations
FROM validahub.analytics.marketplace_daily_metrics_gold
WHERE
  date BETWEEN :start_date AND :end_date
GROUP BY
  marketplace,
  date
ORDER BY
  marketplace,
  date
