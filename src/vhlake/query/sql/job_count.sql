-- How many finished jobs were created in [:since, :until) (what the job anomaly detector can learn from).
SELECT count(*) AS jobs
FROM validation_results_silver
WHERE created_date >= :since AND created_date < :until
    AND status IN ('success', 'failed')
    AND total_rows > 0 AND invalid_rows IS NOT NULL AND processing_time_ms IS NOT NULL
