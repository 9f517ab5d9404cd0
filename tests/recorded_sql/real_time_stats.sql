/* Jobs created since :since, per marketplace (all of them, or only :marketplace), straight from silver. */
/* created_date >= :since_date lets both engines skip older silver partitions. */
SELECT
  marketplace,
  COUNT(*) AS total_jobs,
  COUNT_IF(status = 'success') AS successful_jobs,
  COUNT_IF(status = 'failed') AS failed_jobs,
  COUNT_IF(status = 'running') AS running_jobs,
  COALESCE(SUM(total_rows), 0) AS rows_processed,
  AVG(processing_time_ms) AS avg_processing_time_ms,
  PERCENTILE(processing_time_ms, 0.95) AS p95_processing_time,
  MAX(created_at) AS last_job_at
FROM validahub.analytics.validation_results_silver
WHERE
  created_date >= :since_date
  AND created_at >= :since
  AND (
    :marketplace IS NULL OR marketplace = :marketplace
  )
GROUP BY
  marketplace
ORDER BY
  total_jobs DESC,
  marketplace
