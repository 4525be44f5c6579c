"""Names that come from outside (gateway logs, the key/team inventory, IG1 billing):
one normalisation rule for all of them, and a short form for places with no room.

`normalise_name` is THE rule that makes a model name from IG1 match the same model from
the logs: the white space listed in `NAME_TRIM_CHARS` is removed from both ends, and a
name left empty is no name (None). Gateway ingest trims the same characters in SQL
(`usage_jobs/defs/gateway/ingest.py`, macro `jstr`; `NAME_TRIM_SQL` is that literal, for it
to name); billing applies `normalise_name` in `usage_jobs/defs/billing/parse.py`. Nothing else is changed
(no case folding, no Unicode normalisation): a name is otherwise shown as it was sent.
"""

from __future__ import annotations

import unicodedata

from markupsafe import Markup, escape

NAME_TRIM_CHARS = " \t\r\n"
NAME_TRIM_SQL = "E' \\t\\r\\n'"  # the same characters as a DuckDB string literal, for trim(x, …)

# Charts have a fixed width: a label longer than this is cut, with an ellipsis.
SHORT_LABEL_CHARS = 40
ELLIPSIS = "…"


def normalise_name(value: str | None) -> str | None:
    """`'  qwen3-32b\\t'` → `'qwen3-32b'`; `'  '` → None. The same rule as gateway ingest."""
    if value is None:
        return None
    trimmed = value.strip(NAME_TRIM_CHARS)
    return trimmed or None


def shorten(text: str, limit: int = SHORT_LABEL_CHARS) -> str:
    """At most `limit` characters: longer text keeps its first `limit - 1` and ends in an ellipsis."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + ELLIPSIS


def plain_label(text: str, limit: int = SHORT_LABEL_CHARS) -> str:
    """A name for a chart (an image: no bidi isolation possible): invisible format characters
    (bidi overrides, zero-width marks) dropped, runs of white space made one space, then shortened."""
    kept = (" " if ch.isspace() else ch for ch in str(text) if ch.isspace() or unicodedata.category(ch) not in ("Cf", "Cc"))
    return shorten(" ".join("".join(kept).split()), limit)


def chart_labels(labels: list[str], limit: int = SHORT_LABEL_CHARS) -> list[str]:
    """`plain_label` for each, kept distinct: two long names with the same beginning would
    otherwise become one bar or one legend entry, so later ones get a number."""
    result, seen = [], set()
    for label in labels:
        short = plain_label(label, limit)
        candidate, number = short, 2
        while candidate in seen:
            suffix = f" ({number})"
            candidate = shorten(short, limit - len(suffix)) + suffix if len(short) + len(suffix) > limit else short + suffix
            number += 1
        seen.add(candidate)
        result.append(candidate)
    return result


# --- names in HTML (Jinja filters registered by the site build) -------------------------
FSI, PDI = "\u2068", "\u2069"  # first-strong isolate … pop directional isolate: <bdi> for plain text


def name_html(value, limit: int | None = None) -> Markup:
    """A name as HTML, escaped and isolated in `<bdi>`: a right-to-left override in it
    (`evil\\u202etxt.exe`) cannot reorder the text around it. With `limit`, a longer name is
    shown shortened with the full text in the `title` attribute."""
    text = "" if value is None else str(value)
    # escape() into an f-string, not Markup.format: the same escaping, without a string.Formatter a call (12 µs, 80,000 names a
    # new day's site at 3,000 keys).
    if limit is not None and len(text) > limit:
        return Markup(f'<bdi title="{escape(text)}">{escape(shorten(text, limit))}</bdi>')
    return Markup(f"<bdi>{escape(text)}</bdi>")


def name_text(value, limit: int | None = None) -> str:
    """A name for plain text where no element is allowed (`<title>`): isolated with FSI … PDI."""
    text = "" if value is None else str(value)
    return FSI + (shorten(text, limit) if limit is not None else text) + PDI
