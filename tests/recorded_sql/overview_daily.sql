/* Every marketplace's daily validations and failures (all categories) between two dates, from gold: the */
/* overview sums them per period (so a period's error rate is its failures over its validations, not a */
/* mean of daily rates) and draws each day as a sparkline point. A day one of whose groups was restated */
/* (gold_restatements) comes with its latest restatement, as in marketplace_daily_performance.sql: when */
/* the newest range that changed it wrote, and the day's validations and error rate before it. */
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
), ranges AS (
  /* per day, what each pipeline range that restated it changed; the newest range first */
  SELECT
    marketplace,
    date,
    run_id,
    bronze_version,
    MAX(restated_at) AS restated_at,
    SUM(new_total_validations - previous_total_validations) AS validations_gained,
    SUM(
      ROUND(COALESCE(new_error_rate, 0.0) * new_total_validations) - ROUND(previous_error_rate * previous_total_validations)
    ) AS failures_gained,
    ROW_NUMBER() OVER (
      PARTITION BY marketplace, date
      ORDER BY MAX(restated_at) DESC, run_id DESC, bronze_version DESC
    ) AS newest
  FROM validahub.analytics.gold_restatements
  WHERE
    date BETWEEN :start_date AND :end_date
  GROUP BY
    marketplace,
    date,
    run_id,
    bronze_version
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
LEFT JOIN ranges AS r
  ON r.marketplace = d.marketplace AND r.date = d.date AND r.newest = 1
ORDER BY
  d.marketplace,
  d.date
