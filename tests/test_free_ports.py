"""The tests' ports: each pytest-xdist worker hands out its own, outside the kernel's
ephemeral range, so two workers' servers never pick the same one."""

from __future__ import annotations

from pathlib import Path

import harness
import pytest


def test_workers_hand_out_disjoint_ports_below_the_ephemeral_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for workers in (1, 2, 4):
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
        blocks = []
        for index in range(workers):
            monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
            block = harness._port_block()
            assert block is not None
            blocks.append(block)
        assert blocks[0].start == harness.FIRST_PORT
        assert blocks[-1].stop <= low
        for before, after in zip(blocks, blocks[1:], strict=False):
            assert before.stop <= after.start


def test_ports_handed_out_are_distinct_free_and_the_workers_own() -> None:
    ports = [harness.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    block = harness._port_block()
    assert block is not None
    assert all(port in block for port in ports)
    assert all(harness._bindable(port) for port in ports)
