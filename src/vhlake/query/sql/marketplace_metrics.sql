-- Daily gold metrics of one marketplace, per category, between two dates (inclusive), with each group's
-- latest restatement (gold_restatements): when, and its validations and error rate before it (NULL for a
-- group never restated).
WITH restated AS (
    SELECT
        date,
        category,
        restated_at,
        previous_total_validations,
        previous_error_rate,
        row_number() OVER (
            PARTITION BY date, category ORDER BY restated_at DESC, run_id DESC, bronze_version DESC
        ) AS newest
    FROM gold_restatements
    WHERE marketplace = :marketplace
      AND date BETWEEN :start_date AND :end_date
)
SELECT
    g.date,
    g.category,
    g.total_validations,
    g.successful_validations,
    g.failed_validations,
    g.total_rows_processed,
    g.avg_processing_time_ms,
    g.p50_processing_time,
    g.p95_processing_time,
    g.p99_processing_time,
    g.unique_users,
    g.error_rate,
    r.restated_at,
    r.previous_total_validations,
    r.previous_error_rate
FROM marketplace_daily_metrics_gold AS g
LEFT JOIN restated AS r
    ON r.date = g.date AND r.category = g.category AND r.newest = 1
WHERE g.marketplace = :marketplace
  AND g.date BETWEEN :start_date AND :end_date
ORDER BY g.date, g.category
