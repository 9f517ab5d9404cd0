-- The latest value of each data-quality measurement (per dimension) recorded since :since, with how
-- many batches reported it.
SELECT
    metric,
    dimension,
    max_by(value, measured_at) AS latest_value,
    max(measured_at) AS measured_at,
    count(*) AS batches
FROM data_quality_metrics
WHERE measured_date >= :since_date AND measured_at >= :since
GROUP BY metric, dimension
ORDER BY metric, dimension
