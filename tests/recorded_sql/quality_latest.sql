/* The latest value of each data-quality measurement (per dimension) recorded since :since, with how */
/* many batches reported it. */
SELECT
  metric,
  dimension,
  MAX_BY(value, measured_at) AS latest_value,
  MAX(measured_at) AS measured_at,
  COUNT(*) AS batches
FROM validahub.analytics.data_quality_metrics
WHERE
  measured_date >= :since_date AND measured_at >= :since
GROUP BY
  metric,
  dimension
ORDER BY
  metric,
  dimension
