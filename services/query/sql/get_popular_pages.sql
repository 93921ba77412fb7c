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
-- Cost: read from the `page_hours` range view (services/query/sql/README.md): whole hours
--   from the projection of that name, the cut hours at either end from the rows; counts
--   add up and the latest view is the largest tuple of all hours, so any range is exact.
SELECT
    page_url,
    max(latest).3 AS page_title,
    sum(event_count) AS view_count
FROM page_hours(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})
WHERE event_type IN ('page_view', 'pageview')
GROUP BY page_url
ORDER BY view_count DESC, page_url ASC, page_title ASC
LIMIT {limit:Int32}
