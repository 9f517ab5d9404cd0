-- Every marketplace's exact p95 processing time and active sellers in the current period
-- [:current_start, :end_date] and the previous one [:previous_start, :current_start - 1], from silver:
-- gold's per-day, per-category p95s and distinct users do not add up over a period. created_date
-- bounds let both engines read only the two periods' partitions.
SELECT
    marketplace,
    CASE WHEN created_date >= :current_start THEN 'current' ELSE 'previous' END AS period,
    percentile(processing_time_ms, 0.95) AS p95_processing_time,
    count(DISTINCT user_id) AS active_sellers
FROM validation_results_silver
WHERE created_date BETWEEN :previous_start AND :end_date
GROUP BY 1, 2
ORDER BY marketplace, period
