/* How many finished jobs were created in [:since, :until) (what the job anomaly detector can learn from). */
SELECT
  COUNT(*) AS jobs
FROM validahub.analytics.validation_results_silver
WHERE
  created_date >= :since
  AND created_date < :until
  AND status IN ('success', 'failed')
  AND total_rows > 0
  AND NOT invalid_rows IS NULL
  AND NOT processing_time_ms IS NULL
