-- One marketplace's daily totals over a period (all categories), with the change from the previous
-- day with data and the 7-row moving average of validations; and, for a day one of whose groups was
-- restated (gold_restatements), its latest restatement: when, and the day's validations and error rate
-- before it, which are today's less what the groups that restatement changed gained (failures restored
-- as round(validations * error rate), exact, the rate being failed / validations; a deleted group's new
-- values are 0 and NULL).
WITH daily AS (
    SELECT
        date,
        sum(total_validations) AS total_validations,
        sum(successful_validations) AS successful_validations,
        sum(failed_validations) AS failed_validations,
        sum(total_rows_processed) AS total_rows_processed
    FROM marketplace_daily_metrics_gold
    WHERE marketplace = :marketplace
      AND date BETWEEN :start_date AND :end_date
    GROUP BY date
),
changes AS (
    SELECT
        date,
        restated_at,
        max(restated_at) OVER (PARTITION BY date) AS latest,
        new_total_validations - previous_total_validations AS validations_gained,
        round(coalesce(new_error_rate, 0.0) * new_total_validations)
            - round(previous_error_rate * previous_total_validations) AS failures_gained
    FROM gold_restatements
    WHERE marketplace = :marketplace
      AND date BETWEEN :start_date AND :end_date
),
restated AS (
    SELECT
        date,
        restated_at,
        sum(validations_gained) AS validations_gained,
        sum(failures_gained) AS failures_gained
    FROM changes
    WHERE restated_at = latest
    GROUP BY date, restated_at
)
SELECT
    d.date,
    d.total_validations,
    d.successful_validations,
    d.failed_validations,
    d.total_rows_processed,
    d.failed_validations / d.total_validations AS error_rate,
    d.total_validations - lag(d.total_validations) OVER (ORDER BY d.date) AS daily_change,
    avg(d.total_validations) OVER (ORDER BY d.date ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS moving_avg_7d,
    r.restated_at,
    d.total_validations - r.validations_gained AS previous_total_validations,
    (d.failed_validations - r.failures_gained)
        / nullif(d.total_validations - r.validations_gained, 0) AS previous_error_rate
FROM daily AS d
LEFT JOIN restated AS r ON r.date = d.date
ORDER BY d.date
