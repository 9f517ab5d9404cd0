-- One marketplace's categories over a period: totals, error rate and the job-weighted mean
-- processing time (groups without any processing time do not weigh in).
SELECT
    category,
    sum(total_validations) AS total_validations,
    sum(failed_validations) AS failed_validations,
    sum(failed_validations) / sum(total_validations) AS error_rate,
    sum(total_rows_processed) AS total_rows_processed,
    sum(avg_processing_time_ms * (successful_validations + failed_validations))
        / sum(CASE WHEN avg_processing_time_ms IS NOT NULL THEN successful_validations + failed_validations END)
        AS avg_processing_time_ms
FROM marketplace_daily_metrics_gold
WHERE marketplace = :marketplace
  AND date BETWEEN :start_date AND :end_date
GROUP BY category
ORDER BY total_validations DESC, category
