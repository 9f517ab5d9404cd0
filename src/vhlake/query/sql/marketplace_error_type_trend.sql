-- The daily occurrences of one marketplace's first error types (as many as the top parameter) over a
-- period (optionally one category), ranked as marketplace_error_types ranks them: most occurrences,
-- then name. A day on which such a type did not occur has no row.
WITH ranked AS (
    SELECT
        error_type,
        row_number() OVER (ORDER BY sum(occurrences) DESC, error_type) AS error_rank
    FROM error_type_daily_gold
    WHERE marketplace = :marketplace
      AND date BETWEEN :start_date AND :end_date
      AND (:category IS NULL OR category = :category)
    GROUP BY error_type
)
SELECT
    g.date,
    g.error_type,
    sum(g.occurrences) AS occurrences
FROM error_type_daily_gold AS g
JOIN ranked AS r ON g.error_type = r.error_type
WHERE g.marketplace = :marketplace
  AND g.date BETWEEN :start_date AND :end_date
  AND (:category IS NULL OR g.category = :category)
  AND r.error_rank <= :top
GROUP BY g.date, g.error_type
ORDER BY g.date, g.error_type
