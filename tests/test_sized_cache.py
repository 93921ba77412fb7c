"""common/sized_cache.py: least recently used first, bounded by bytes, sizes that grow."""

from __future__ import annotations

from common.sized_cache import SizedCache


def filled(*items: tuple[str, int], limit: int = 100) -> SizedCache[str, str]:
    cache: SizedCache[str, str] = SizedCache()
    for key, size in items:
        assert cache.put(key, key.upper(), size, limit)
    return cache


def test_the_least_recently_used_go_first_past_the_limit() -> None:
    cache = filled(("a", 40), ("b", 40))
    assert cache.get("a") == "A"  # now b is the least recently used
    assert cache.put("c", "C", 40, 100)
    assert (cache.peek("a"), cache.peek("b"), cache.peek("c")) == ("A", None, "C")
    assert cache.total_bytes == 80


def test_peek_leaves_the_order_alone() -> None:
    cache = filled(("a", 40), ("b", 40))
    assert cache.peek("a") == "A"
    cache.put("c", "C", 40, 100)
    assert cache.peek("a") is None and cache.peek("b") == "B"


def test_a_value_over_the_limit_alone_is_not_kept_and_drops_nothing() -> None:
    cache = filled(("a", 40))
    assert not cache.put("big", "BIG", 101, 100)
    assert len(cache) == 1 and cache.total_bytes == 40


def test_a_replaced_value_no_longer_counts() -> None:
    cache = filled(("a", 40), ("a", 30))
    assert len(cache) == 1 and cache.total_bytes == 30


def test_growing_counts_and_trims_the_grown_one_too() -> None:
    cache = filled(("a", 40), ("b", 40))
    cache.grow("b", 15, 100)  # 95: fits
    assert cache.total_bytes == 95 and len(cache) == 2
    cache.grow("a", 10, 100)  # 105: a is the least recently used, so a goes
    assert cache.peek("a") is None and cache.total_bytes == 55
    cache.grow("b", 50, 100)  # b alone is 105 now: over the limit by itself
    assert len(cache) == 0 and cache.total_bytes == 0
    cache.grow("gone", 10, 100)  # nothing kept under it: nothing counted
    assert cache.total_bytes == 0


def test_clear_forgets_everything() -> None:
    cache = filled(("a", 40), ("b", 40))
    cache.clear()
    assert len(cache) == 0 and cache.total_bytes == 0 and cache.get("a") is None
