-- One marketplace's daily totals over a period (all categories), with the change from the previous
-- day with data and the 7-row moving average of validations; and, for a day one of whose groups was
-- restated (gold_restatements), its latest restatement: the newest pipeline range (run_id,
-- bronze_version) that changed any of its groups, when, and the day's validations and error rate before
-- it: today's less what that range's groups gained (failures restored as round(validations * error
-- rate), exact, the rate being failed / validations; a deleted group's new values are 0 and NULL).
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
ranges AS (
    -- per day, what each pipeline range that restated it changed; the newest range first
    SELECT
        date,
        run_id,
        bronze_version,
        max(restated_at) AS restated_at,
        sum(new_total_validations - previous_total_validations) AS validations_gained,
        sum(
            round(coalesce(new_error_rate, 0.0) * new_total_validations)
            - round(previous_error_rate * previous_total_validations)
        ) AS failures_gained,
        row_number() OVER (
            PARTITION BY date ORDER BY max(restated_at) DESC, run_id DESC, bronze_version DESC
        ) AS newest
    FROM gold_restatements
    WHERE marketplace = :marketplace
      AND date BETWEEN :start_date AND :end_date
    GROUP BY date, run_id, bronze_version
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
LEFT JOIN ranges AS r ON r.date = d.date AND r.newest = 1
ORDER BY d.date
