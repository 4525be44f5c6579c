"""The chargeback statement: the billed cost of a span of billing days (an invoice month) per team
and per key within each team, rounded ONCE to the cent.

The shares in `chargeback` are exact (10^-18). The statement rounds the span's billed total to the
cent, splits it among teams by largest remainder on their exact shares, then each team's cents
among its keys the same way: the teams add up to the billed total, and each team's keys to the
team, to the cent. A model costing €0.0008 a day adds to its users' exact shares every day and is
charged with the rest of their month, never rounded away day by day. USD: the same, from the
exact shares converted at each billing day's rate (`chargeback.allocated_cost_usd`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, fields
from decimal import Decimal

import duckdb

from usage_jobs.defs.billing.allocation import round_once, to_cents
from usage_jobs.defs.billing.reconcile import BUCKET_LABELS

TOP_MODELS = 3


class StatementError(ValueError):
    """The span's billing cannot be put on one statement (e.g. two contract currencies)."""


@dataclass(frozen=True)
class StatementKey:
    """A key's line of the statement (the `chargeback` export, in its column order)."""

    period_start: str  # first billing day (IG1_BILLING_TIMEZONE)
    period_end: str  # last billing day
    team_id: str
    team_alias: str | None
    key_hash: str
    key_alias: str | None
    billed_cost: Decimal  # rounded once, to the cent, in the contract currency
    billed_currency: str
    billed_cost_usd: Decimal | None  # rounded once, to the cent; None without a USD rate
    share_pct: float  # of the span's billed total, from the exact share
    top_models: str  # the key's largest models by billed share: "model (62.5%); …"
    exact_cost: Decimal  # the exact share before rounding
    billing_days: int  # days of the span IG1 has billed (withdrawn days not counted)


CHARGEBACK_COLUMNS = [f.name for f in fields(StatementKey)]


@dataclass(frozen=True)
class StatementTeam:
    team_id: str
    team_alias: str | None
    billed_cost: Decimal
    billed_cost_usd: Decimal | None
    share_pct: float
    top_models: tuple[tuple[str, float], ...]  # (model, % of the team's share)
    keys: tuple[StatementKey, ...]


@dataclass(frozen=True)
class Statement:
    start: dt.date
    end: dt.date
    currency: str | None
    billed_total: Decimal  # the span's billed cost, rounded to the cent (= the sum of the teams)
    billed_total_usd: Decimal | None
    exact_total: Decimal  # the billed cost unrounded
    teams: tuple[StatementTeam, ...]  # largest first
    billed_days: int
    unbilled_days: tuple[str, ...]  # days of the span with gateway traffic IG1 has not billed yet
    withdrawn_days: tuple[str, ...]

    @property
    def lines(self) -> tuple[StatementKey, ...]:
        return tuple(key for team in self.teams for key in team.keys)


def models_text(models: Iterable[tuple[str, float]]) -> str:
    """Models and their shares as one text, "model (62.5%); …": a key's top models, and a team's on paper."""
    return "; ".join(f"{model} ({pct:.1f}%)" for model, pct in models)


def _top(by_model: dict[str, Decimal], whole: Decimal) -> tuple[tuple[str, float], ...]:
    ranked = sorted(by_model.items(), key=lambda item: (-item[1], item[0]))[:TOP_MODELS]
    return tuple((model, round(float(share / whole * 100), 1) if whole else 0.0) for model, share in ranked)


def _pct(part: Decimal, whole: Decimal) -> float:
    return round(float(part / whole * 100), 4) if whole else 0.0


def statement(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> Statement:
    """The statement of billing days start..end (an invoice month, or any span), from the exact shares."""
    billed = conn.execute("SELECT day, cost, currency FROM billed_usage WHERE day BETWEEN ? AND ? ORDER BY day, model", [start, end]).fetchall()
    currencies = {currency for _, _, currency in billed}
    if len(currencies) > 1:
        raise StatementError(f"billing days {start} to {end} are billed in several currencies ({', '.join(sorted(currencies))}): one statement per currency")
    currency = next(iter(currencies), None)
    exact_total = sum((cost for _, cost, _ in billed), Decimal(0))
    shares = conn.execute(
        "SELECT team_id, key_hash, model, sum(allocated_cost), sum(allocated_cost_usd), bool_and(allocated_cost_usd IS NOT NULL), "
        "arg_max(team_alias, day), arg_max(key_alias, day) FROM chargeback WHERE day BETWEEN ? AND ? GROUP BY team_id, key_hash, model "
        "ORDER BY team_id, key_hash, model", [start, end]).fetchall()
    keys: dict[tuple[str, str], dict] = {}
    for team_id, key_hash, model, cost, usd, converted, team_alias, key_alias in shares:
        key = keys.setdefault((team_id, key_hash), {"cost": Decimal(0), "usd": Decimal(0), "converted": True, "models": defaultdict(Decimal),
                                                     "team_alias": None, "key_alias": None})
        key["cost"] += cost
        key["usd"] += usd or 0
        key["converted"] &= converted
        key["models"][model] += cost
        key["team_alias"] = key["team_alias"] or team_alias or BUCKET_LABELS.get(team_id)
        key["key_alias"] = key["key_alias"] or key_alias
    by_team: dict[str, list[tuple[str, dict]]] = defaultdict(list)  # each team's keys, grouped once (teams x keys scans were quadratic)
    for (team_id, key_hash), values in sorted(keys.items()):
        by_team[team_id].append((key_hash, values))
    team_ids = sorted(by_team)
    team_exact = [sum((v["cost"] for _, v in by_team[team_id]), Decimal(0)) for team_id in team_ids]
    team_cents = round_once(exact_total, team_exact) if team_ids else []
    with_usd = bool(keys) and all(v["converted"] for v in keys.values())
    exact_usd = sum((v["usd"] for v in keys.values()), Decimal(0))
    team_usd_exact = [sum((v["usd"] for _, v in by_team[team_id]), Decimal(0)) for team_id in team_ids]
    team_usd = round_once(exact_usd, team_usd_exact) if with_usd and team_ids else [None] * len(team_ids)
    bill_days = conn.execute(
        "SELECT strftime(day, '%Y-%m-%d'), billed, withdrawn FROM billing_days WHERE day BETWEEN ? AND ? ORDER BY day", [start, end]).fetchall()
    billed_days = sum(1 for _, is_billed, withdrawn in bill_days if is_billed and not withdrawn)
    teams = []
    for team_id, exact, cents, usd in zip(team_ids, team_exact, team_cents, team_usd):
        members = by_team[team_id]
        key_cents = round_once(cents, [v["cost"] for _, v in members])
        key_usd = round_once(usd, [v["usd"] for _, v in members]) if usd is not None else [None] * len(members)
        lines, team_models = [], defaultdict(Decimal)
        for (key_hash, values), key_cost, key_cost_usd in zip(members, key_cents, key_usd):
            for model, share in values["models"].items():
                team_models[model] += share
            lines.append(StatementKey(
                period_start=start.isoformat(), period_end=end.isoformat(), team_id=team_id, team_alias=values["team_alias"], key_hash=key_hash,
                key_alias=values["key_alias"], billed_cost=key_cost, billed_currency=currency, billed_cost_usd=key_cost_usd,
                share_pct=_pct(values["cost"], exact_total), exact_cost=values["cost"], billing_days=billed_days,
                top_models=models_text(_top(values["models"], values["cost"]))))
        lines.sort(key=lambda line: (-line.exact_cost, line.key_hash))
        teams.append(StatementTeam(team_id, lines[0].team_alias if lines else BUCKET_LABELS.get(team_id), cents, usd, _pct(exact, exact_total),
                                   _top(team_models, exact), tuple(lines)))
    teams.sort(key=lambda team: (-team.billed_cost, -team.share_pct, team.team_id))
    return Statement(
        start=start, end=end, currency=currency, billed_total=Decimal(to_cents(exact_total)).scaleb(-2),
        billed_total_usd=sum((t.billed_cost_usd for t in teams), Decimal("0.00")) if with_usd else None, exact_total=exact_total,
        teams=tuple(teams), billed_days=billed_days,
        unbilled_days=tuple(row[0] for row in conn.execute(  # days with gateway traffic IG1 has not billed yet
            "SELECT DISTINCT strftime(day, '%Y-%m-%d') FROM reconciliation WHERE status = 'not billed yet' AND day BETWEEN ? AND ? ORDER BY 1",
            [start, end]).fetchall()),
        withdrawn_days=tuple(day for day, _, withdrawn in bill_days if withdrawn))
