-- Per day (the UTC date the input was ingested), reason and marketplace, between :start_date and
-- :end_date: the events the expectations quarantined (source 'quarantine', reason = the rule) and the
-- inputs ingestion rejected as not JSON objects (source 'rejected', no marketplace; reason = the error
-- up to its first ':', with 'invalid UTF-8 at byte N' as 'invalid UTF-8'), each group's newest
-- ingestion and, as its example, the newest input's text cut to :example_chars + 1 characters (the
-- caller cuts it to :example_chars and marks it truncated): the identifying fields and the first
-- 100 characters of the payload of a quarantined event, the raw text of a rejected one.
SELECT
    'quarantine' AS source,
    ingestion_date AS date,
    reason,
    marketplace,
    count(*) AS events,
    max(ingestion_time) AS last_seen,
    max_by(
        left(
            concat_ws(
                ' ',
                'event_id=' || coalesce(event_id, 'NULL'),
                'event_type=' || coalesce(event_type, 'NULL'),
                'job_id=' || coalesce(job_id, 'NULL'),
                'marketplace=' || coalesce(marketplace, 'NULL'),
                'rescued=' || coalesce(_rescued_data, 'NULL'),
                'payload=' || coalesce(left(payload, 100), 'NULL')
            ),
            :example_chars + 1
        ),
        ingestion_time
    ) AS example
FROM validation_events_quarantine
WHERE ingestion_date BETWEEN :start_date AND :end_date
GROUP BY ingestion_date, reason, marketplace
UNION ALL
SELECT
    'rejected' AS source,
    ingestion_date AS date,
    CASE WHEN error LIKE 'invalid UTF-8%' THEN 'invalid UTF-8' ELSE split_part(error, ':', 1) END AS reason,
    CAST(NULL AS STRING) AS marketplace,
    count(*) AS events,
    max(ingestion_time) AS last_seen,
    max_by(left(coalesce(raw, ''), :example_chars + 1), ingestion_time) AS example
FROM validation_events_rejected
WHERE ingestion_date BETWEEN :start_date AND :end_date
GROUP BY ingestion_date, 3
ORDER BY date, source, reason, marketplace
