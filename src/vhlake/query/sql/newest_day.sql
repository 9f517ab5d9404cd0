-- The newest day gold has data for, on or before :today (what the ML jobs measure "the last days" from).
SELECT max(date) AS newest_day
FROM marketplace_daily_metrics_gold
WHERE date <= :today
