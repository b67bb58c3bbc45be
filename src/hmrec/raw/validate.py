"""The declared checks on raw rows: how each column parses, why a row is set aside, and when a file is unusable."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from hmrec.raw.read import LINE, RawDataError, RawFile, shown

# A column where at least this share of the filled values does not parse is in the wrong format (fatal);
# below it, the few bad rows are set aside.
FATAL_SHARE = 0.5
REASON = "reason"
TRUNCATED = "truncated_line"
UNBALANCED = "unbalanced_quote"


def digits(name: str) -> pl.Expr:
    """An id written as digits (leading zeros allowed) -> Int64; null when it is anything else."""
    value = pl.col(name).cast(pl.Int64, strict=False)
    return pl.when(value >= 0).then(value)


def integer(name: str, dtype: pl.DataType) -> pl.Expr:
    """A whole number written as '253' or '253.0' -> dtype; null when not a whole number."""
    value = pl.col(name).str.strip_chars().cast(pl.Float64, strict=False)
    return pl.when(value == value.round(0)).then(value).cast(dtype, strict=False)


def number(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.Float64, strict=False)


def iso_date(name: str) -> pl.Expr:
    return pl.col(name).str.to_date("%Y-%m-%d", strict=False)


@dataclass(frozen=True)
class Parse:
    """A column that must parse: its typed value (null when the text does not parse) and what it should be."""

    column: str
    value: pl.Expr
    expected: str


@dataclass
class Cleaned:
    """A cleaned table, the rows set aside (with `line`, the raw columns and `reason`), counts and notes."""

    frame: pl.DataFrame
    quarantine: pl.DataFrame
    quality: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def first_reason(checks: list[tuple[str, pl.Expr]]) -> pl.Expr:
    """The name of the first check that is true for a row, else null: each bad row gets one reason."""
    reason = pl.lit(None, dtype=pl.String)
    for name, failed in reversed(checks):
        reason = pl.when(failed).then(pl.lit(name)).otherwise(reason)
    return reason


def row_checks(raw: RawFile, parses: tuple[Parse, ...], extra: list[tuple[str, pl.Expr]]) -> list[tuple[str, pl.Expr]]:
    """Truncated last line, then null required columns, then unparseable values, then the table's own checks.

    The checks read `raw_<name>` (the text) and `<name>` (the typed value), so each value is parsed once.
    """
    checks: list[tuple[str, pl.Expr]] = []
    if raw.truncated_line is not None:
        checks.append((TRUNCATED, pl.col(LINE) == raw.truncated_line))
    if raw.broken_lines:
        checks.append((UNBALANCED, pl.col(LINE).is_in(raw.broken_lines)))
    checks += [(f"null_{name}", pl.col(f"raw_{name}").is_null()) for name in raw.spec.required]
    checks += [(f"bad_{p.column}", pl.col(f"raw_{p.column}").is_not_null() & pl.col(p.column).is_null())
               for p in parses]
    return checks + extra


def checked(raw: RawFile, parses: tuple[Parse, ...], extra: list[tuple[str, pl.Expr]]) -> pl.LazyFrame:
    """Add `reason` and, for every column, `raw_<name>` (the text) beside the typed value under its own name.

    `extra` checks are expressions on the typed columns.
    """
    columns = raw.spec.columns
    typed = {p.column: p.value for p in parses}
    frame = raw.frame.select(
        pl.col(LINE),
        *[pl.col(c).alias(f"raw_{c}") for c in columns],
        *[typed.get(c, pl.col(c)).alias(c) for c in columns],
    )
    return frame.with_columns(first_reason(row_checks(raw, parses, extra)).alias(REASON))


def quarantine_rows(frame: pl.DataFrame | pl.LazyFrame, columns: tuple[str, ...]) -> pl.DataFrame | pl.LazyFrame:
    """The set-aside layout: file line number, the raw text of every column, the reason."""
    return frame.select(
        (pl.col(LINE).cast(pl.Int64) + 2).alias("line"),
        *[pl.col(f"raw_{c}").alias(c) for c in columns],
        pl.col(REASON),
    )


def empty_quarantine(columns: tuple[str, ...]) -> pl.DataFrame:
    schema = {"line": pl.Int64, **{c: pl.String for c in columns}, REASON: pl.String}
    return pl.DataFrame(schema=schema)


def raise_if_unreadable(raw: RawFile, quarantine: pl.DataFrame, n_rows: int, parses: tuple[Parse, ...]) -> None:
    """A column that mostly fails to parse is the wrong format: stop, naming the column, count and examples."""
    for p in parses:
        bad = quarantine.filter(pl.col(REASON) == f"bad_{p.column}")[p.column]
        if bad.len() and bad.len() >= FATAL_SHARE * n_rows:
            examples = ", ".join(shown(v) for v in bad.head(2).to_list())
            raise RawDataError(
                f"{raw.name}: column {p.column}: {bad.len():,} of {n_rows:,} rows are not {p.expected} "
                f"(e.g. {examples}); is this the right file, or was it saved in another format?"
            )


def raise_if_nothing_left(raw: RawFile, kept: int, quarantine: pl.DataFrame) -> None:
    if kept:
        return
    reasons = quarantine[REASON].value_counts(sort=True).head(2)
    summary = ", ".join(f"{r} {n:,}" for r, n in reasons.iter_rows())
    examples = ", ".join(shown(v) for v in quarantine[raw.spec.columns[0]].head(2).to_list())
    raise RawDataError(
        f"{raw.name}: column {REASON}: the table is empty after cleaning: all {quarantine.height:,} rows were "
        f"set aside ({summary}; first column e.g. {examples})"
    )


def count_reasons(table: str, reasons: tuple[str, ...], quarantine: pl.DataFrame) -> dict[str, int]:
    """Quality counts `table.reason` for every possible reason, zeros included, so the keys never change."""
    counts = dict(quarantine[REASON].value_counts().iter_rows()) if quarantine.height else {}
    unexpected = set(counts) - set(reasons)
    if unexpected:
        raise AssertionError(f"{table}: reasons {sorted(unexpected)} are not declared in its reason list")
    return {f"{table}.{reason}": int(counts.get(reason, 0)) for reason in reasons}
