"""Sharing a billed amount among consumers, to the cent (largest remainder)."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

CENT = Decimal("0.01")
SHARE_PLACES = 18  # a share of a billed amount is kept to 10^-18 of the currency: full precision for any sum of them
SHARE_UNIT = Decimal(1).scaleb(-SHARE_PLACES)


def to_cents(amount: Decimal) -> int:
    return int(amount.quantize(CENT, rounding=ROUND_HALF_UP) * 100)


def allocate_cents(total_cents: int, weights: list[Fraction | Decimal | int]) -> list[int]:
    """Split `total_cents` in proportion to `weights`; the parts add up to the total exactly.

    Each part gets the floor of its exact share; the cents left over go to the largest
    fractional remainders (ties to the earlier weight), so the result is deterministic
    for an ordered input. Weights must be >= 0 with a positive sum."""
    # Exact in integers: the weights over their least common denominator keep their proportions, and every share's remainder
    # is then a multiple of 1 / (their sum). As exact as Fractions, without a Fraction per weight (a statement rounds thousands).
    ratios = [weight.as_integer_ratio() for weight in weights]
    denominator = math.lcm(*(d for _, d in ratios))
    units = [n * (denominator // d) for n, d in ratios]
    if any(unit < 0 for unit in units):
        raise ValueError("allocation weights must be >= 0")
    unit_sum = sum(units)
    if unit_sum <= 0:
        raise ValueError("allocation weights must not all be zero")
    parts, remainders = zip(*(divmod(total_cents * unit, unit_sum) for unit in units))
    parts = list(parts)
    left = total_cents - sum(parts)
    for index in sorted(range(len(parts)), key=lambda i: (-remainders[i], i))[:left]:
        parts[index] += 1
    return parts


def to_units(amount: Decimal, places: int = SHARE_PLACES) -> int:
    """An amount in units of 10^-places (exact for any amount with at most `places` decimals)."""
    return int(Decimal(amount).scaleb(places).to_integral_value(rounding=ROUND_HALF_UP))


def from_units(units: int, places: int = SHARE_PLACES) -> Decimal:
    return Decimal(units).scaleb(-places)


def share_exactly(amount: Decimal, weights: list[Fraction | Decimal | int]) -> list[Decimal]:
    """`amount` shared in proportion to `weights` at full precision (10^-18): the shares add up to `amount` exactly.

    Nothing is rounded to the cent here: a consumer of €0.0008 a day keeps its €0.0008 until the
    statement rounds the month once. All-zero weights share nothing (every share 0) only when the amount is 0."""
    return [from_units(units) for units in allocate_cents(to_units(amount), weights)]


def round_once(total: Decimal, shares: list[Decimal]) -> list[Decimal]:
    """The statement's rounding: `total` to the cent (half up), split in proportion to the exact `shares` by
    largest remainder, so the rounded parts add up to the rounded total and a share under a cent can still
    carry a cent. Zero shares get nothing; with nothing to share (all zero), every part is 0."""
    cents = to_cents(total)
    if not shares or all(share == 0 for share in shares):
        if cents:
            raise ValueError("a non-zero total cannot be split among zero shares")
        return [Decimal("0.00")] * len(shares)
    return [Decimal(part).scaleb(-2) for part in allocate_cents(cents, shares)]
