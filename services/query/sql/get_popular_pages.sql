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
-- Cost: every page in range with its views and the time of its latest view (`pages`,
--   most viewed first) comes from the `page_view_hours` range view
--   (services/query/sql/README.md): whole hours from the projection of that name, the
--   cut hours at either end from the rows; counts add up and the latest time is the
--   larger of all hours', so any range is exact. Only the `limit` first pages get a
--   title (`titles`): read from each one's rows at its latest time, found through the
--   sorting key — a granule or so, where carrying the title in every hour of the
--   projection cost as much as the rest of the call. The rows are every page, so the
--   LIMIT counts them all (rows_before_limit_at_least), and the pages it drops are the
--   ones without a title. Both are scalars, each computed once.
WITH
    (
        SELECT groupArray((page_url, view_count, last_view))
        FROM
        (
            SELECT page_url, sum(event_count) AS view_count, max(last_view) AS last_view
            FROM page_view_hours(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})
            WHERE event_type IN ('page_view', 'pageview')
            GROUP BY page_url
            ORDER BY view_count DESC, page_url ASC
        )
    ) AS pages,
    (
        SELECT CAST((groupArray(page_url), groupArray(latest.3)), 'Map(String, String)')
        FROM
        (
            SELECT page_url, max((timestamp, event_id, page_title)) AS latest
            FROM clickstream_events
            WHERE (page_url, timestamp) IN (
                    SELECT page.1, page.3
                    FROM (SELECT arraySlice(pages, 1, {limit:Int32}) AS top)
                    ARRAY JOIN top AS page
                )
              AND event_type IN ('page_view', 'pageview')
            GROUP BY page_url
        )
    ) AS titles
SELECT
    page.1 AS page_url,
    titles[page.1] AS page_title,
    page.2 AS view_count
FROM (SELECT pages AS every_page)
ARRAY JOIN every_page AS page
ORDER BY view_count DESC, page_url ASC, page_title ASC
LIMIT {limit:Int32}
