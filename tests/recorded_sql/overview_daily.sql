/* Every marketplace's daily validations and failures (all categories) between two dates, from gold: the */
/* overview sums them per period (so a period's error rate is its failures over its validations, not a */
/* mean of daily rates) and draws each day as a sparkline point. A day one of whose groups was restated */
/* (gold_restatements) comes with its latest restatement, as in marketplace_daily_performance.sql: when, */
/* and the day's validations and error rate before it. */
WITH daily AS (
  SELECT
    marketplace,
    date,
    SUM(total_validations) AS total_validations,
    SUM(failed_validations) AS failed_validations
  FROM validahub.analytics.marketplace_daily_metrics_gold
  WHERE
    date BETWEEN :start_date AND :end_date
  GROUP BY
    marketplace,
    date
), changes AS (
  SELECT
    marketplace,
    date,
    restated_at,
    MAX(restated_at) OVER (PARTITION BY marketplace, date) AS latest,
    new_total_validations - previous_total_validations AS validations_gained,
    ROUND(COALESCE(new_error_rate, 0.0) * new_total_validations) - ROUND(previous_error_rate * previous_total_validations) AS failures_gained
  FROM validahub.analytics.gold_restatements
  WHERE
    date BETWEEN :start_date AND :end_date
), restated AS (
  SELECT
    marketplace,
    date,
    restated_at,
    SUM(validations_gained) AS validations_gained,
    SUM(failures_gained) AS failures_gained
  FROM changes
  WHERE
    restated_at = latest
  GROUP BY
    marketplace,
    date,
    restated_at
)
SELECT
  d.marketplace,
  d.date,
  d.total_validations,
  d.failed_validations,
  r.restated_at,
  d.total_validations - r.validations_gained AS previous_total_validations,
  (
    d.failed_validations - r.failures_gained
  ) / NULLIF(d.total_validations - r.validations_gained, 0) AS previous_error_rate
FROM daily AS d
LEFT JOIN restated AS r
  ON r.marketplace = d.marketplace AND r.date = d.date
ORDER BY
  d.marketplace,
  d.date
