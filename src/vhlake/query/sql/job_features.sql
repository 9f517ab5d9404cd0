-- Finished jobs created in [:since, :until) with what the job anomaly detector looks at: when they ran,
-- how big, how long, how bad, and how many jobs their marketplace had in the clock hour before.
-- A repeatable sample: jobs whose md5(job_id) starts (in hex) below :sample_below ('g': all of them).
WITH jobs AS (
    SELECT
        job_id,
        marketplace,
        created_at,
        created_date,
        total_rows,
        processing_time_ms,
        invalid_rows / total_rows AS error_rate,
        date_trunc('HOUR', created_at) AS created_hour
    FROM validation_results_silver
    WHERE created_date >= :since AND created_date < :until
        AND status IN ('success', 'failed')
        AND total_rows > 0 AND invalid_rows IS NOT NULL AND processing_time_ms IS NOT NULL
        AND substr(md5(job_id), 1, 4) < :sample_below
), volume AS (
    SELECT marketplace, date_trunc('HOUR', created_at) AS created_hour, count(*) AS jobs
    FROM validation_results_silver
    WHERE created_date >= date_sub(:since, 1) AND created_date < :until
    GROUP BY marketplace, date_trunc('HOUR', created_at)
)
SELECT
    j.job_id,
    j.marketplace,
    j.created_at,
    j.created_date,
    hour(j.created_at) AS hour_of_day,
    dayofweek(j.created_at) AS day_of_week,
    j.total_rows,
    j.processing_time_ms,
    j.error_rate,
    coalesce(v.jobs, 0) AS previous_hour_jobs
FROM jobs j
LEFT JOIN volume v ON v.marketplace = j.marketplace AND v.created_hour = j.created_hour - INTERVAL 1 HOUR
-- the first hour of the lake has no hour before it to count: its jobs are left out, not called idle
WHERE j.created_hour > (SELECT min(created_hour) FROM volume)
