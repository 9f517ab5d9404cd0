-- Each (rule, key)'s latest evaluation since :since_date, with when it last notified.
WITH ranked AS (
    SELECT
        *,
        row_number() OVER (PARTITION BY rule, key ORDER BY evaluated_at DESC) AS newest_first,
        max(CASE WHEN notification IS NOT NULL THEN evaluated_at END) OVER (PARTITION BY rule, key) AS last_notified_at
    FROM alert_events
    WHERE evaluated_date >= :since_date
)
SELECT rule, key, state, value, threshold, severity, evaluated_at, last_notified_at
FROM ranked
WHERE newest_first = 1
ORDER BY state DESC, severity, rule, key
