-- The marketplaces in gold, with their first and last day of data and their validations.
SELECT
    marketplace,
    min(date) AS first_date,
    max(date) AS last_date,
    sum(total_validations) AS total_validations
FROM marketplace_daily_metrics_gold
GROUP BY marketplace
ORDER BY total_validations DESC, marketplace
