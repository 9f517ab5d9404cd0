/* One marketplace's categories over a period: totals, error rate and the job-weighted mean */
/* processing time (groups without any processing time do not weigh in). */
SELECT
  category,
  SUM(total_validations) AS total_validations,
  SUM(failed_validations) AS failed_validations,
  SUM(failed_validations) / SUM(total_validations) AS error_rate,
  SUM(total_rows_processed) AS total_rows_processed,
  SUM(avg_processing_time_ms * (
    successful_validations + failed_validations
  )) / SUM(
    CASE
      WHEN NOT avg_processing_time_ms IS NULL
      THEN successful_validations + failed_validations
    END
  ) AS avg_processing_time_ms
FROM validahub.analytics.marketplace_daily_metrics_gold
WHERE
  marketplace = :marketplace AND date BETWEEN :start_date AND :end_date
GROUP BY
  category
ORDER BY
  total_validations DESC,
  category
