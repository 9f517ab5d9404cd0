-- Per (marketplace, category) and day in [:since, :until): validations and failed validations.
SELECT
    marketplace,
    category,
    date,
    sum(total_validations) AS validations,
    sum(failed_validations) AS failed
FROM marketplace_daily_metrics_gold
WHERE date >= :since AND date < :until
GROUP BY marketplace, category, date
ORDER BY marketplace, category, date
