-- Jobs created since :since, per marketplace (all of them, or only :marketplace), straight from silver.
-- created_date >= :since_date lets both engines skip older silver partitions.
SELECT
    marketplace,
    count(*) AS total_jobs,
    count_if(status = 'success') AS successful_jobs,
    count_if(status = 'failed') AS failed_jobs,
    count_if(status = 'running') AS running_jobs,
    coalesce(sum(total_rows), 0) AS rows_processed,
    avg(processing_time_ms) AS avg_processing_time_ms,
    percentile(processing_time_ms, 0.95) AS p95_processing_time,
    max(created_at) AS last_job_at
FROM validation_results_silver
WHERE created_date >= :since_date
  AND created_at >= :since
  AND (:marketplace IS NULL OR marketplace = :marketplace)
GROUP BY marketplace
ORDER BY total_jobs DESC, marketplace
