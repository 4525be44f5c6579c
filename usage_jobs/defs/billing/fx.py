"""USD per unit of the contract currency: one constant, or a dated rates file."""

from __future__ import annotations

import bisect
import csv
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path


class FxError(ValueError):
    """The exchange-rate setting or file cannot be used; the message names the problem."""


@dataclass(frozen=True)
class UsdRates:
    """`rate(day)`: the constant, or the file's latest rate on or before the day."""

    constant: Decimal | None = None
    dates: tuple[dt.date, ...] = ()
    values: tuple[Decimal, ...] = ()
    source: str = "not set"

    def rate(self, day: dt.date) -> Decimal | None:
        if self.constant is not None:
            return self.constant
        index = bisect.bisect_right(self.dates, day) - 1
        return self.values[index] if index >= 0 else None

    def by_first_day(self) -> dict[str, str]:
        """The rates as text by the day each starts (a constant from the first day on): plain config for a resource."""
        if self.constant is not None:
            return {dt.date.min.isoformat(): str(self.constant)}
        return {day.isoformat(): str(value) for day, value in zip(self.dates, self.values)}

    @classmethod
    def from_first_days(cls, rates: dict[str, str]) -> UsdRates:
        days = sorted(rates)
        return cls(dates=tuple(dt.date.fromisoformat(day) for day in days), values=tuple(Decimal(rates[day]) for day in days))

    def usd_per_unit(self, currency: str | None, day: dt.date) -> Decimal | None:
        """USD per unit of `currency` on `day`: 1 for USD itself, else the configured rate."""
        return Decimal(1) if currency == "USD" else self.rate(day)


def _positive(text: str, where: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise FxError(f"{where}: {text!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise FxError(f"{where}: {text!r} must be a positive number")
    return value


def load_usd_rates(setting: str | None, name: str = "IG1_USD_RATE") -> UsdRates:
    """Parse the setting: empty (no rate), a number such as `1.08`, or a CSV file `date,usd_per_unit`."""
    if not setting:
        return UsdRates()
    try:
        return UsdRates(constant=_positive(setting, name), source=f"constant {setting.strip()}")
    except FxError:
        pass
    path = Path(setting)
    if not path.is_file():
        raise FxError(f"{name}={setting!r} is neither a number nor an existing rates file (CSV: date,usd_per_unit)")
    pairs: dict[dt.date, Decimal] = {}
    with path.open(newline="", encoding="utf-8") as stream:
        for number, row in enumerate(csv.reader(stream), start=1):
            if not row or (number == 1 and not row[0][:1].isdigit()):
                continue  # blank line or header
            where = f"{name} file {path}, line {number}"
            if len(row) < 2:
                raise FxError(f"{where}: expected date,usd_per_unit")
            try:
                day = dt.date.fromisoformat(row[0].strip())
            except ValueError:
                raise FxError(f"{where}: {row[0]!r} is not a YYYY-MM-DD date") from None
            pairs[day] = _positive(row[1], where)
    if not pairs:
        raise FxError(f"{name} file {path} holds no rates")
    days = tuple(sorted(pairs))
    return UsdRates(dates=days, values=tuple(pairs[d] for d in days), source=f"file {path} ({len(days)} rates, {days[0]} to {days[-1]})")
