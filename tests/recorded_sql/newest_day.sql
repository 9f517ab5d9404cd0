/* The newest day gold has data for, on or before :today (what the ML jobs measure "the last days" from). */
SELECT
  MAX(date) AS newest_day
FROM validahub.analytics.marketplace_daily_metrics_gold
WHERE
  date <= :today
