-- Per marketplace, the newest event folded into silver (and so into gold), however old it is: a feed that
-- stopped weeks ago must still show its lag.
-- Cheap at any size: gold (small: one row per day, marketplace and category) gives each
-- marketplace's newest created day, and silver is read only in the partitions of that day and of the
-- lookback_days before it. The join is on both partition columns, the shape Databricks' dynamic partition
-- pruning applies to; DuckDB pushes the few (marketplace, created_date) values into its scan.
-- A job completing later than every job created in that window, yet created before it, is not seen:
-- the answer then errs towards more lag, never less.
WITH newest_day AS (
    SELECT marketplace, max(date) AS created_date
    FROM marketplace_daily_metrics_gold
    GROUP BY marketplace
),
recent_days AS (
    SELECT marketplace, date_sub(created_date, days_before) AS created_date
    FROM newest_day
    LATERAL VIEW explode(sequence(0, :lookback_days)) lookback AS days_before
)
SELECT
    s.marketplace,
    max(coalesce(s.completed_at, s.created_at)) AS newest_event_at
FROM validation_results_silver AS s
JOIN recent_days AS r
    ON s.marketplace = r.marketplace AND s.created_date = r.created_date
GROUP BY s.marketplace
