-- Per marketplace, the newest event folded into silver (and so into gold) among jobs created since
-- :since_date (recent partitions only: the newest event is always there while data flows).
SELECT
    marketplace,
    max(coalesce(completed_at, created_at)) AS newest_event_at
FROM validation_results_silver
WHERE created_date >= :since_date
GROUP BY marketplace
