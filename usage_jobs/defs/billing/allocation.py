"""Sharing a billed amount among consumers, to the cent (largest remainder)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

CENT = Decimal("0.01")


def to_cents(amount: Decimal) -> int:
    return int(amount.quantize(CENT, rounding=ROUND_HALF_UP) * 100)


def allocate_cents(total_cents: int, weights: list[Fraction | Decimal | int]) -> list[int]:
    """Split `total_cents` in proportion to `weights`; the parts add up to the total exactly.

    Each part gets the floor of its exact share; the cents left over go to the largest
    fractional remainders (ties to the earlier weight), so the result is deterministic
    for an ordered input. Weights must be >= 0 with a positive sum."""
    exact = [Fraction(w) for w in weights]
    if any(w < 0 for w in exact):
        raise ValueError("allocation weights must be >= 0")
    weight_sum = sum(exact)
    if weight_sum <= 0:
        raise ValueError("allocation weights must not all be zero")
    shares = [total_cents * w / weight_sum for w in exact]
    parts = [share.numerator // share.denominator for share in shares]
    left = total_cents - sum(parts)
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(shares[i] - parts[i]), i))
    for index in by_remainder[:left]:
        parts[index] += 1
    return parts
