"""Validate data frames against the schema: columns, dtypes, ids. The only data validator.

Every error names the file, the column, the schema key that refers to it and a fix.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import polars as pl

from sslkit.config import Feature
from sslkit.errors import DataError, SchemaError


@dataclass(frozen=True)
class FeatureSpec:
    """What the model needs to know about one encoded feature."""

    name: str
    type: str
    num_embeddings: int  # vocabulary size incl. pad (0) and OOV (1); 0 for dense
    max_len: int
    dense: bool = False

    @property
    def multi_valued(self) -> bool:
        return self.max_len > 1


def require_columns(df: pl.DataFrame, columns: dict[str, str], *, path: str) -> None:
    """Every needed column is present. `columns` maps column -> the schema key naming it."""
    for column, key in columns.items():
        if column not in df.columns:
            close = difflib.get_close_matches(column, df.columns, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"columns are: {', '.join(df.columns[:12])}"
            if df.width == 1 and (sep := next((c for c in (";", "\t", "|") if c in df.columns[0]), None)):
                name = {";": "';'", "\t": "a tab", "|": "'|'"}[sep]
                raise SchemaError(f"{path}: column '{column}' ({key}) not found: the file reads as one column whose "
                                  f"header holds {name}, so its fields are probably separated by {name}",
                                  hint="sslkit reads .csv files separated by commas and .tsv files by tabs: save it "
                                       "with commas (or tab-separated as .tsv)")
            raise SchemaError(f"{path}: column '{column}' ({key}) not found", hint=f"{hint} (or fix {key})")


def check_feature(df: pl.DataFrame, column: str, feature: Feature, *, path: str, key: str,
                  fitting: bool = True) -> None:
    """The column's dtype suits the feature type (`fitting`: the rows vocabularies are fitted on)."""
    dtype = df.schema[column]
    where = f"{path}: column '{column}' ({key})"
    is_list = isinstance(dtype, (pl.List, pl.Array))
    if isinstance(dtype, pl.Struct) or (is_list and feature.type != "multi_categorical"):
        raise SchemaError(f"{where} holds {_name(dtype)} values, which type {feature.type} cannot read",
                          hint="use type: multi_categorical for list columns")
    if feature.type == "multi_categorical" and not is_list:
        if dtype != pl.String:
            raise SchemaError(f"{where} holds {_name(dtype)}, not lists or strings",
                              hint="use type: categorical for one value per row")
        if feature.separator is None:
            raise SchemaError(f"{where} is a string column, so multi_categorical needs a separator",
                              hint=f"add separator: \"|\" (or the one your data uses) under {key}")
    if feature.type == "text" and dtype != pl.String:
        raise SchemaError(f"{where} holds {_name(dtype)}, but type text needs strings",
                          hint="use type: categorical or numeric")
    if feature.type == "numeric" and fitting and df.height and df[column].null_count() == df.height:
        raise SchemaError(f"{where} is empty (every value is null), so type numeric has nothing to bucket",
                          hint="fill the column, or drop the feature")
    if feature.type == "numeric" and not dtype.is_numeric():
        raise SchemaError(f"{where} holds {_name(dtype)}, but type numeric needs numbers",
                          hint="use type: categorical, or clean the column")
    if feature.type == "numeric" and dtype.is_float():
        bad = df[column].is_infinite() | df[column].is_nan()
        if bad.any():
            raise SchemaError(f"{where} holds {int(bad.sum())} non-finite value(s) (inf/NaN), e.g. row {int(bad.arg_max() or 0) + 1}",
                              hint="replace them (or leave them empty: a missing value)")


def check_ids(df: pl.DataFrame, column: str, *, path: str, key: str, unique: bool) -> None:
    """Ids are present (no nulls) and, for a table of entities, unique."""
    nulls = df[column].null_count()
    if nulls:
        raise DataError(f"{path}: column '{column}' ({key}) has {nulls} empty id(s)",
                        hint="drop those rows or fill the ids")
    if unique:
        dup = df[column].is_duplicated()
        if dup.any():
            example = df.filter(dup)[column][0]
            raise DataError(f"{path}: column '{column}' ({key}) has {int(dup.sum())} rows with duplicate ids, "
                            f"e.g. '{example}'", hint="keep one row per id")


def _name(dtype: pl.DataType) -> str:
    if dtype == pl.String:
        return "text"
    if isinstance(dtype, (pl.List, pl.Array)):
        return "list"
    return str(dtype).lower()
