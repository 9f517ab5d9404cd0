/* One marketplace's daily totals over a period (all categories), with the change from the previous */
/* day with data and the 7-row moving average of validations. */
WITH daily AS (
  SELECT
    date,
    SUM(total_validations) AS total_validations,
    SUM(successful_validations) AS successful_validations,
    SUM(failed_validations) AS failed_validations,
    SUM(total_rows_processed) AS total_rows_processed
  FROM validahub.analytics.marketplace_daily_metrics_gold
  WHERE
    marketplace = :marketplace AND date BETWEEN :start_date AND :end_date
  GROUP BY
    date
)
SELECT
  date,
  total_validations,
  successful_validations,
  failed_validations,
  total_rows_processed,
  failed_validations / total_validations AS error_rate,
  total_validations - LAG(total_validations) OVER (ORDER BY date) AS daily_change,
  AVG(total_validations) OVER (ORDER BY date ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS moving_avg_7d
FROM daily
ORDER BY
  date
