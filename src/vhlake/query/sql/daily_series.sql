-- Per marketplace and day in [:since, :until): validations, error rate, and the job-weighted p95 time.
SELECT
    marketplace,
    date,
    sum(total_validations) AS validations,
    sum(failed_validations) / sum(total_validations) AS error_rate,
    sum(p95_processing_time * (successful_validations + failed_validations))
        / sum(CASE WHEN p95_processing_time IS NOT NULL THEN successful_validations + failed_validations END)
        AS p95_processing_time
FROM marketplace_daily_metrics_gold
WHERE date >= :since AND date < :until
GROUP BY marketplace, date
ORDER BY marketplace, date
