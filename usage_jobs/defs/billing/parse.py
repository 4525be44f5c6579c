"""The one place that knows the shape of IG1's billing responses (DESIGN §3.3), as pydantic models.

`/usage/history` is documented only as a "per-model, per-day breakdown"; anything that
is not exactly the shape below is refused with a message naming the field and its value
(the pydantic error, reworded), so a change on IG1's side stops the run instead of
filling the warehouse with wrong figures. Model names are normalised by the rule the
gateway logs follow (`usage_jobs.names.normalise_name`), so the two sides name a model
alike; two rows that normalise to the same day × model are refused.
"""

from __future__ import annotations

import datetime as dt
import reprlib
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from usage_jobs.names import normalise_name


class BillingFormatError(ValueError):
    """An IG1 response is not in the shape the product understands."""


def _json_number(value: Any) -> Any:
    """JSON numbers only: pydantic would also take "12" or true for a number."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise PydanticCustomError("number_type", "Input should be a JSON number")
    return value


def _model_name(value: str) -> str:
    # The same rule as the gateway logs (usage_jobs.names): " qwen3-32b\t" from IG1 is the logs' "qwen3-32b".
    name = normalise_name(value)
    if name is None:
        raise PydanticCustomError("model_name", "Input should be a model name")
    return name


Count = Annotated[int, Field(strict=True, ge=0)]  # a whole number >= 0: neither 1.0, "12" nor true
Amount = Annotated[Decimal, BeforeValidator(_json_number), Field(ge=0, allow_inf_nan=False)]  # exact: 1.25 is Decimal("1.25")
ModelName = Annotated[str, Field(strict=True), AfterValidator(_model_name)]


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class CommitStatus(_Response):
    """`GET /usage` → `{"current": 1.2468, "commit": 1000, "max_throughput": 100}`."""

    current: Amount  # this month's spend so far, contract currency
    commit: Amount  # the monthly commit, contract currency
    max_throughput: Annotated[float, BeforeValidator(_json_number)] | None = None


class BilledRow(_Response):
    day: dt.date = Field(alias="date")
    model: ModelName
    input_tokens: Count
    output_tokens: Count
    requests: Count | None = None
    cost: Amount


class BilledHistory(_Response):
    """`GET /usage/history` → `{"currency": "EUR", "data": [{"date", "model", "input_tokens", "output_tokens", "requests"?, "cost"}]}`."""

    currency: Annotated[str, Field(strict=True, pattern=r"^[A-Z]{3}$")]  # ISO 4217
    rows: list[BilledRow] = Field(alias="data")


def _fail(endpoint: str, where: str, problem: str) -> BillingFormatError:
    return BillingFormatError(f"IG1 {endpoint} returned an unexpected response: {where} {problem}")


def _validated(model: type[_Response], endpoint: str, document: Any) -> Any:
    """The document as `model`, or BillingFormatError naming the first wrong field and its value."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".") or "the body"
        if error["type"] == "missing":
            raise _fail(endpoint, where, "is missing") from None
        raise _fail(endpoint, where, f"is {reprlib.repr(error['input'])}: {error['msg']}") from None


def parse_usage(document: Any) -> CommitStatus:
    return _validated(CommitStatus, "/usage", document)


def parse_history(document: Any, start: dt.date, end: dt.date) -> BilledHistory:
    """The history of start…end; a row outside the asked days, or one day × model twice, is refused."""
    endpoint = "/usage/history"
    history = _validated(BilledHistory, endpoint, document)
    seen: set[tuple[dt.date, str]] = set()
    for index, row in enumerate(history.rows):
        if not start <= row.day <= end:
            raise _fail(endpoint, f"data[{index}].date", f"is {row.day}, outside the requested {start} to {end}")
        if (row.day, row.model) in seen:
            raise _fail(endpoint, f"data[{index}]", f"repeats {row.day} × {row.model}")
        seen.add((row.day, row.model))
    return history
