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
SELECT
    page_url,
    latest_view.3 AS page_title,
    view_count
FROM
(
    SELECT
        page_url,
        count() AS view_count,
        max((timestamp, event_id, page_title)) AS latest_view
    FROM clickstream_events
    WHERE event_type IN ('page_view', 'pageview')
      AND timestamp >= {start_date:DateTime}
      AND timestamp <= {end_date:DateTime}
    GROUP BY page_url
)
ORDER BY view_count DESC, page_url ASC, page_title ASC
LIMIT {limit:Int32}
