/* Per marketplace and day in [:since, :until): validations, error rate, and the job-weighted p95 time. */
SELECT
  marketplace,
  date,
  SUM(total_validations) AS validations,
  SUM(failed_validations) / SUM(total_validations) AS error_rate,
  SUM(p95_processing_time * (
    successful_validations + failed_validations
  )) / SUM(
    CASE
      WHEN NOT p95_processing_time IS NULL
      THEN successful_validations + failed_validations
    END
  ) AS p95_processing_time
FROM validahub.analytics.marketplace_daily_metrics_gold
WHERE
  date >= :since AND date < :until
GROUP BY
  marketplace,
  date
ORDER BY
  marketplace,
  date
