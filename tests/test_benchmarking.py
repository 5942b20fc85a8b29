"""The timing helpers every benchmark shares (fire_kernels.benchmarking)."""

from __future__ import annotations

from collections import Counter

from fire_kernels.benchmarking import interleaved_medians


def test_interleaved_medians_varies_the_order():
    """Every function is timed `repeats` times, and each follows every other one
    several times: a call pays for what its predecessor left behind (cold caches,
    a sleeping thread pool), so a fixed order would bias one candidate."""
    n, repeats = 4, 40
    calls: list[int] = []
    times = interleaved_medians([lambda k=k: calls.append(k) for k in range(n)],
                                warmup=1, repeats=repeats)
    assert len(times) == n and all(t >= 0 for t in times)
    timed = calls[n:]  # after one warm-up call each
    assert Counter(timed) == {k: repeats for k in range(n)}
    follows = Counter(zip(timed, timed[1:]))
    assert all(follows[(a, b)] >= 5 for a in range(n) for b in range(n) if a != b), follows
