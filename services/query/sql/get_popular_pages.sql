-- get_popular_pages: the most viewed pages.
-- Tutorial: 004 "Build a Clickstream Analytics API" (get_popular_pages.pipe).
-- Parameters:
--   start_date DateTime  earliest event time included (inclusive)
--   end_date   DateTime  latest event time included (inclusive)
--   limit      Int32     most pages returned
-- Definitions: a page view is an event with event_type 'page_view' (what the tutorial's
--   data sends) or 'pageview' (what the tutorial's SQL filters on); both count.
--   One row per page_url (not per url and title as in the tutorial, so renaming a page
--   does not split its count); view_count = its page views; page_title = the title of
--   its latest page view in range, the largest (timestamp, event_id, page_title).
-- Ordering: view_count DESC (most viewed first), then page_url ASC, page_title ASC.
-- Cost: hours wholly inside the range are read from the `pages_hourly` projection
--   (a row per page, event type and hour, whatever the traffic); only the partial hours
--   at either end are read from the rows. A count adds up and a largest tuple is the
--   largest of the two halves, so the answer is the rows' answer.
WITH
    toStartOfHour({start_date:DateTime}) AS first_hour,
    toStartOfHour({end_date:DateTime}) AS last_hour,
    {start_date:DateTime} = first_hour AS first_hour_whole,
    -- The last representable DateTime ends every hour it is in.
    (toMinute({end_date:DateTime}) = 59 AND toSecond({end_date:DateTime}) = 59)
        OR {end_date:DateTime} = toDateTime(4294967295) AS last_hour_whole
SELECT
    page_url,
    latest_view.3 AS page_title,
    view_count
FROM
(
    SELECT
        page_url,
        sum(views) AS view_count,
        max(latest) AS latest_view
    FROM
    (
        SELECT
            page_url,
            count() AS views,
            max((timestamp, event_id, page_title)) AS latest
        FROM clickstream_events
        WHERE event_type IN ('page_view', 'pageview')
          AND (toStartOfHour(timestamp) > first_hour
               OR (toStartOfHour(timestamp) = first_hour AND first_hour_whole))
          AND (toStartOfHour(timestamp) < last_hour
               OR (toStartOfHour(timestamp) = last_hour AND last_hour_whole))
        GROUP BY page_url

        UNION ALL

        SELECT
            page_url,
            count() AS views,
            max((timestamp, event_id, page_title)) AS latest
        FROM clickstream_events
        WHERE event_type IN ('page_view', 'pageview')
          AND timestamp >= {start_date:DateTime}
          AND timestamp <= {end_date:DateTime}
          AND ((toStartOfHour(timestamp) = first_hour AND NOT first_hour_whole)
               OR (toStartOfHour(timestamp) = last_hour AND NOT last_hour_whole))
        GROUP BY page_url
    )
    GROUP BY page_url
)
ORDER BY view_count DESC, page_url ASC, page_title ASC
LIMIT {limit:Int32}
