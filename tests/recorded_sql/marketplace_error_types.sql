/* One marketplace's error types over a period (optionally one category), most occurrences first. */
/* Gold keeps each day's share of failed jobs, and shares do not average: each row's failed jobs are */
/* restored as round(jobs * share) (exact, the share being failed / jobs) and the period's share is */
/* the failed jobs summed over the jobs summed. */
SELECT
  error_type,
  SUM(jobs) AS jobs,
  SUM(occurrences) AS occurrences,
  CAST(SUM(ROUND(jobs * share_of_failed_jobs)) AS BIGINT) AS failed_jobs,
  SUM(ROUND(jobs * share_of_failed_jobs)) / SUM(jobs) AS share_of_failed_jobs
FROM validahub.analytics.error_type_daily_gold
WHERE
  marketplace = :marketplace
  AND date BETWEEN :start_date AND :end_date
  AND (
    :category IS NULL OR category = :category
  )
GROUP BY
  error_type
ORDER BY
  occurrences DESC,
  error_type
