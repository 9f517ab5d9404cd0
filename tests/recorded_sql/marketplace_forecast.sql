/* One marketplace's daily forecast in [:start_date, :end_date], summed over its categories. ml_predictions */
/* holds one series per (marketplace, category) and one set of rows per training run: each day takes the */
/* newest run that forecast it (the freshest forecast made for that day), and only that run's categories */
/* are summed, so runs never mix within a day. Volume and its bounds are sums (a bound is NULL when a */
/* category's is); the error rate is the categories' expected failures over their expected validations. */
WITH runs AS (
  SELECT DISTINCT
    prediction_date,
    model_version,
    trained_at
  FROM validahub.analytics.ml_predictions
  WHERE
    marketplace = :marketplace
    AND model_type = 'forecast'
    AND prediction_date BETWEEN :start_date AND :end_date
), newest AS (
  SELECT
    prediction_date,
    model_version,
    ROW_NUMBER() OVER (PARTITION BY prediction_date ORDER BY trained_at DESC, model_version DESC) AS run_rank
  FROM runs
)
SELECT
  p.prediction_date AS date,
  p.model_version,
  MAX(p.trained_at) AS trained_at,
  COUNT(*) AS categories,
  CASE
    WHEN COUNT(p.predicted_validations) = COUNT(*)
    THEN SUM(p.predicted_validations)
  END AS predicted_validations,
  CASE WHEN COUNT(p.lower_bound) = COUNT(*) THEN SUM(p.lower_bound) END AS lower_bound,
  CASE WHEN COUNT(p.upper_bound) = COUNT(*) THEN SUM(p.upper_bound) END AS upper_bound,
  MAX(p.confidence_level) AS confidence_level,
  SUM(p.predicted_error_rate * p.predicted_validations) / NULLIF(
    SUM(CASE WHEN NOT p.predicted_error_rate IS NULL THEN p.predicted_validations END),
    0
  ) AS predicted_error_rate
FROM validahub.analytics.ml_predictions AS p
JOIN newest AS n
  ON p.prediction_date = n.prediction_date
  AND p.model_version = n.model_version
  AND n.run_rank = 1
WHERE
  p.marketplace = :marketplace
  AND p.model_type = 'forecast'
  AND p.prediction_date BETWEEN :start_date AND :end_date
GROUP BY
  p.prediction_date,
  p.model_version
ORDER BY
  date
