/* One marketplace's anomalous days in [:start_date, :end_date], as the daily detector of `vhlake ml score` */
/* left them in anomalies (rows with a job_id are jobs, not days, and are left out). */
SELECT
  date,
  metric,
  observed,
  expected,
  z_score,
  reason,
  baseline,
  baseline_days,
  scored_at
FROM validahub.analytics.anomalies
WHERE
  marketplace = :marketplace
  AND job_id IS NULL
  AND date BETWEEN :start_date AND :end_date
ORDER BY
  date,
  metric
