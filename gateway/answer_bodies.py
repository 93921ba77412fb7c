"""The HTTP bodies of recent answers, kept by the bytes the service answered with.

Printing a response message as JSON is most of the gateway's CPU for an answer of many rows
(`test_timeseries` by the hour: 1,440 rows, several milliseconds, against about one for
everything else a request costs), and a dashboard asks the same pipes again and again,
which the query service answers with the very same bytes while the data is unchanged (its
kept answers: services/query/sql/README.md). A body depends on nothing but those bytes and
the route that prints them, so it is kept under them — compared whole, never by a digest —
and printed again only when they change; the least recently used go past a size. Nothing
of who asked is part of a body, and a caller only ever gets the body of the bytes its own
call was answered with, so keeping bodies changes no answer."""

from __future__ import annotations

from common.sized_cache import SizedCache
from gateway.routes import Route

# Room for a few hundred typical answers, or a dozen of the largest pipes' by the hour.
DEFAULT_LIMIT_BYTES = 32 * 1024 * 1024


class AnswerBodies:
    """Bodies (and their content types) by route and answer bytes; used on the event loop."""

    def __init__(self, limit_bytes: int = DEFAULT_LIMIT_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self._kept: SizedCache[tuple[str, bytes], tuple[Route, bytes, str]] = SizedCache()

    def get(self, route: Route, answer: bytes) -> tuple[bytes, str] | None:
        """The body printed from `answer` by `route`, if kept."""
        kept = self._kept.get((route.grpc_method, answer))
        # By the route itself: a deploy's route of the same name may print other messages.
        if kept is None or kept[0] is not route:
            return None
        return kept[1], kept[2]

    def keep(self, route: Route, answer: bytes, body: bytes, content_type: str) -> None:
        self._kept.put(
            (route.grpc_method, answer),
            (route, body, content_type),
            len(answer) + len(body),
            self.limit_bytes,
        )
