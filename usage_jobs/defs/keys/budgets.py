"""Budgets from the gateway's inventory (`max_budget` over `budget_duration`, in USD)."""

from __future__ import annotations

import math
import re

NEAR_SHARE, OVER_SHARE = 0.8, 1.0
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w|mo)\s*$")
_DAYS_PER_UNIT = {"s": 1 / 86400, "m": 1 / 1440, "h": 1 / 24, "d": 1, "w": 7, "mo": 30}


def budget_window_days(duration: str | None) -> int | None:
    """Days a LiteLLM budget_duration covers ("30d", "1mo", "24h", ...), at least one; None when
    there is no duration (a lifetime budget) or it cannot be read."""
    match = _DURATION.match(duration or "")
    if not match:
        return None
    return max(1, math.ceil(int(match.group(1)) * _DAYS_PER_UNIT[match.group(2)]))


def budget_flag(spend: float, max_budget: float | None) -> tuple[float | None, str | None]:
    """(share of the budget used, flag): 'over budget' from 100%, 'near budget' from 80%."""
    if not max_budget or max_budget <= 0:
        return None, None
    share = spend / max_budget
    if share >= OVER_SHARE:
        return share, "over budget"
    if share >= NEAR_SHARE:
        return share, "near budget"
    return share, None
