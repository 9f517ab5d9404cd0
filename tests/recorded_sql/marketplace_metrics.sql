/* Daily gold metrics of one marketplace, per category, between two dates (inclusive). */
SELECT
  date,
  category,
  total_validations,
  successful_validations,
  failed_validations,
  total_rows_processed,
  avg_processing_time_ms,
  p50_processing_time,
  p95_processing_time,
  p99_processing_time,
  unique_users,
  error_rate
FROM validahub.analytics.marketplace_daily_metrics_gold
WHERE
  marketplace = :marketplace AND date BETWEEN :start_date AND :end_date
ORDER BY
  date,
  category
