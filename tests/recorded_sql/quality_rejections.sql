/* Per day (the UTC date the input was ingested), reason and marketplace, between :start_date and */
/* :end_date: the events the expectations quarantined (source 'quarantine', reason = the rule) and the */
/* inputs ingestion rejected as not JSON objects (source 'rejected', no marketplace; reason = the error */
/* up to its first ':', with 'invalid UTF-8 at byte N' as 'invalid UTF-8'), each group's newest */
/* ingestion and, as its example, the newest input's text cut to :example_chars + 1 characters (the */
/* caller cuts it to :example_chars and marks it truncated): the identifying fields and the first */
/* 100 characters of the payload of a quarantined event, the raw text of a rejected one. */
SELECT
  'quarantine' AS source,
  ingestion_date AS date,
  reason,
  marketplace,
  COUNT(*) AS events,
  MAX(ingestion_time) AS last_seen,
  MAX_BY(
    LEFT(
      CONCAT_WS(
        ' ',
        'event_id=' || COALESCE(event_id, 'NULL'),
        'event_type=' || COALESCE(event_type, 'NULL'),
        'job_id=' || COALESCE(job_id, 'NULL'),
        'marketplace=' || COALESCE(marketplace, 'NULL'),
        'rescued=' || COALESCE(_rescued_data, 'NULL'),
        'payload=' || COALESCE(LEFT(payload, 100), 'NULL')
      ),
      :example_chars + 1
    ),
    ingestion_time
  ) AS example
FROM validahub.analytics.validation_events_quarantine
WHERE
  ingestion_date BETWEEN :start_date AND :end_date
GROUP BY
  ingestion_date,
  reason,
  marketplace
UNION ALL
SELECT
  'rejected' AS source,
  ingestion_date AS date,
  CASE
    WHEN error LIKE 'invalid UTF-8%'
    THEN 'invalid UTF-8'
    ELSE SPLIT_PART(error, ':', 1)
  END AS reason,
  CAST(NULL AS STRING) AS marketplace,
  COUNT(*) AS events,
  MAX(ingestion_time) AS last_seen,
  MAX_BY(LEFT(COALESCE(raw, ''), :example_chars + 1), ingestion_time) AS example
FROM validahub.analytics.validation_events_rejected
WHERE
  ingestion_date BETWEEN :start_date AND :end_date
GROUP BY
  ingestion_date,
  3
ORDER BY
  date,
  source,
  reason,
  marketplace
