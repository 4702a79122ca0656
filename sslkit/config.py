"""The YAML schema/config: pydantic models for every option, file loading and `--set` overrides.

This is the only place configuration is validated. Precedence (lowest to highest):
model defaults < schema file < `--set key=value` < explicit CLI flags.
Errors name the file (or `--set`), the YAML path (`items.features.genres.separator`) and a fix.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from sslkit.errors import ConfigError

FeatureType = Literal["categorical", "multi_categorical", "text", "numeric"]
FileFormat = Literal["csv", "parquet", "ndjson"]
Augmentation = Literal[
    "none", "fd", "so", "cfm", "rfm", "rfm_no_compl", "cfm_no_dropout", "no_mask"
]

_DEFAULT_MAX_LEN = {"categorical": 1, "numeric": 1, "multi_categorical": 16, "text": 32}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # lr: .inf is a typo, not a setting


class Feature(_Model):
    """One feature of an entity (item or query)."""

    column: str | None = Field(None, description="Source column; defaults to the feature's key.")
    type: FeatureType = Field(description="categorical | multi_categorical | text | numeric")
    min_count: int = Field(1, ge=1, description="Values seen fewer times become out-of-vocabulary.")
    max_size: int | None = Field(None, ge=1, description="Keep at most this many most frequent values.")
    hash_buckets: int | None = Field(
        None, ge=1, description="Hash values that fall outside the vocabulary into this many buckets."
    )
    max_len: int | None = Field(None, ge=1, description="Cap on values per row (multi/text).")
    separator: str | None = Field(None, description="multi_categorical from a string column: separator.")
    ngrams: list[int] = Field(default_factory=lambda: [1], description="text: n-gram sizes, e.g. [1, 2].")
    buckets: int = Field(20, ge=2, description="numeric: number of quantile buckets.")
    dense: bool = Field(False, description="numeric: standardize and feed as a float instead of buckets.")

    @model_validator(mode="after")
    def _options_match_type(self) -> "Feature":
        t = self.type
        if self.separator == "":
            raise ValueError("'separator' must not be empty (omit it for list columns)")
        if self.separator is not None and t != "multi_categorical":
            raise ValueError(f"'separator' only applies to type multi_categorical, not {t}")
        if self.ngrams != [1] and t != "text":
            raise ValueError(f"'ngrams' only applies to type text, not {t}")
        if any(n < 1 or n > 5 for n in self.ngrams) or not self.ngrams:
            raise ValueError("'ngrams' must be a non-empty list of sizes between 1 and 5")
        if self.dense and t != "numeric":
            raise ValueError(f"'dense' only applies to type numeric, not {t}")
        if self.max_len is not None and t in ("categorical", "numeric") and self.max_len != 1:
            raise ValueError(f"'max_len' only applies to multi_categorical and text, not {t}")
        return self

    def source(self, name: str) -> str:
        return self.column or name

    def length(self) -> int:
        return self.max_len or _DEFAULT_MAX_LEN[self.type]


Columns = str | list[str]  # one column, or several that together form an id (a composite key)
Aggregation = Literal["error", "first", "last", "mode", "min", "max", "mean"]


def id_column(columns: Columns) -> str:
    """The column name an id has in sslkit's frames: the column itself, or 'a+b' for a composite key."""
    return columns if isinstance(columns, str) else "+".join(columns)


def _check_columns(value: Columns | None, key: str) -> None:
    if isinstance(value, list) and (len(value) < 2 or len(set(value)) < len(value)):
        raise ValueError(f"'{key}' as a list is a composite key: give two or more distinct columns "
                         "(or one column name as a string)")


class PairRule(_Model):
    """Item-to-item pairs built from an event log (one row per event), within groups."""

    rule: Literal["next", "co_occurrence"] = Field(
        description="next: each event's item → the item of the following event(s) in its group, ordered by "
                    "interactions.time; co_occurrence: every two distinct items of a group, both directions.")
    group: Columns = Field(description="Column(s) whose value is one timeline or basket: user, session, order.")
    window: int | None = Field(
        None, ge=1, le=1000, description="next: pair each event with the next `window` events of its group [1]; at "
                                         "most 1,000 (each event adds up to `window` pairs).")
    max_seconds: float | None = Field(
        None, gt=0, description="next: only targets at most this many seconds after the seed (needs time).")
    tie_break: list[str] = Field(
        default_factory=list, description="Columns that order events with the same time (else file order).")
    max_items: int | None = Field(
        None, ge=2, description="co_occurrence: distinct items used per group (the first in time order) [50]; a "
                                "bigger group is capped, counted and reported, so it adds at most n·(n−1) pairs.")

    @model_validator(mode="after")
    def _options_match_rule(self) -> "PairRule":
        _check_columns(self.group, "group")
        if self.rule == "co_occurrence" and (self.window is not None or self.max_seconds is not None):
            raise ValueError("'window' and 'max_seconds' apply to rule next, not co_occurrence")
        if self.rule == "next" and self.max_items is not None:
            raise ValueError("'max_items' applies to rule co_occurrence (next adds at most `window` pairs per event)")
        return self

    def next_window(self) -> int:
        return self.window or 1

    def item_cap(self) -> int:
        return self.max_items or 50


class Interactions(_Model):
    """Positive (query, item) pairs: a click, a co-view, an install — or an event log they are built from."""

    path: str = Field(description="CSV / Parquet / NDJSON file, a glob, or '-' for stdin.")
    format: FileFormat | None = Field(None, description="Inferred from the extension when omitted.")
    pairs: PairRule | None = Field(None, description="Build item-to-item pairs from an event log (rule, group).")
    query: Columns | None = Field(
        None, validate_default=True,
        description="Column holding the query id (an item id in item-to-item mode); a list of columns "
                    "is a composite key. Omitted when `pairs` builds the pairs.")
    item: Columns = Field(description="Column holding the item id; a list of columns is a composite key.")
    time: str | None = Field(None, description="Optional time column (split.method: time, pairs.rule: next).")
    time_from: list[str] | None = Field(
        None, min_length=1, description="Build the `time` column from these columns, joined with a space.")
    time_format: str | None = Field(
        None, description="Parse `time` from text with this strptime format, e.g. '%Y-%m-%d %H:%M:%S'.")
    where: str | None = Field(
        None, description="Keep only the rows where this condition holds, e.g. \"rating >= 4 AND status = "
                           "'completed'\": columns, values, comparisons, AND/OR/NOT, IN, BETWEEN, LIKE, IS NULL "
                           "and a few functions (lower, upper, length, …); no subqueries, no file or network access.")
    on_unknown_item: Literal["drop", "error"] = Field(
        "drop", description="Pairs whose item (or item query) is not in the catalog: drop or error."
    )

    @model_validator(mode="after")
    def _log_options(self) -> "Interactions":
        _check_columns(self.item, "item")
        _check_columns(self.query, "query")
        if (self.time_from or self.time_format) and not self.time:
            raise ValueError("'time_from' and 'time_format' need 'time' (the name of the time column)")
        if self.time_format is not None and "%" not in self.time_format:
            raise ValueError(f"'time_format' {self.time_format!r} has no %-directive, e.g. '%Y-%m-%d'")
        if self.pairs and not self.time and (self.pairs.max_seconds or self.pairs.rule == "next"):
            raise ValueError(f"pairs.rule: {self.pairs.rule} orders events by time: set 'time' (the time column)")
        return self

    @field_validator("query")
    @classmethod
    def _query_or_pairs(cls, value: Columns | None, info: ValidationInfo) -> Columns | None:
        has_pairs = info.data.get("pairs") is not None
        if value is None and not has_pairs:
            raise ValueError("required key is missing (or give interactions.pairs, which builds item-to-item "
                             "pairs from an event log)")
        if value is not None and has_pairs:
            raise ValueError("interactions.pairs builds the query of every pair from the log; drop 'query'")
        return value

    @field_validator("where")
    @classmethod
    def _where_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_where(value)
        return value

    def item_column(self) -> str:
        """The item id column of the pairs (composite keys joined)."""
        return id_column(self.item)

    def query_column(self) -> str:
        """The query id column of the pairs; `query_<item>` when `pairs` builds them from a log."""
        return id_column(self.query) if self.query is not None else f"query_{self.item_column()}"


def parse_where(text: str) -> Any:
    """`interactions.where` parsed by sslkit's own allow-listed grammar (`sslkit.data.where`).

    Nothing is evaluated here, and the text never reaches an SQL engine: a subquery, a table
    function (read_csv, …), a comment or an oversized condition is refused with one line.
    """
    from sslkit.data.where import parse

    return parse(text)


class Items(_Model):
    """The catalog: one row per item; it is the retrieval corpus."""

    path: str | None = Field(None, description="Items file; omit to read features from interaction rows.")
    format: FileFormat | None = None
    id: Columns | None = Field(None, description="Id column (a list: composite key); defaults to interactions.item.")
    id_separator: str = Field("|", min_length=1, description="Joins the columns of a composite id: 'Margherita|L'.")
    features: dict[str, Feature] = Field(description="Item features by name.", min_length=1)
    aggregate: Aggregation | dict[str, Aggregation] = Field(
        "error", description="No items file: how a feature that varies within one item id becomes one value — "
                             "error (names the id) | first | last | mode, or per feature (also min, max, mean).")

    @model_validator(mode="after")
    def _items_keys(self) -> "Items":
        _check_columns(self.id, "id")
        _check_aggregate(self.aggregate, self.features)
        return self


class Queries(_Model):
    """Where query features come from."""

    kind: Literal["item", "entity"] = Field(
        "item", description="item: item-to-item (features from the catalog); entity: users etc."
    )
    path: str | None = Field(None, description="entity: its own table; omit to use interaction columns.")
    format: FileFormat | None = None
    id: Columns | None = Field(
        None, description="entity: id column (a list: composite key); defaults to interactions.query.")
    id_separator: str = Field("|", min_length=1, description="Joins the columns of a composite id.")
    features: dict[str, Feature] | None = Field(None, description="entity: query features by name.")
    aggregate: Aggregation | dict[str, Aggregation] = Field(
        "error", description="entity without a file: how a feature that varies within one query id becomes "
                             "one value (as items.aggregate).")

    @model_validator(mode="after")
    def _entity_needs_features(self) -> "Queries":
        _check_columns(self.id, "id")
        _check_aggregate(self.aggregate, self.features or {})
        if self.kind == "entity" and not self.features:
            raise ValueError("kind: entity needs 'features' (at least one query feature)")
        if self.kind == "item" and (self.features or self.path):
            raise ValueError("kind: item takes its features from the catalog; drop 'path'/'features'")
        return self


def _check_aggregate(aggregate: Aggregation | dict[str, Aggregation], features: dict[str, Feature]) -> None:
    if isinstance(aggregate, str):
        if aggregate in ("min", "max", "mean"):
            raise ValueError(f"aggregate: {aggregate} applies to numeric features only: give it per feature, "
                             f"e.g. aggregate: {{price: {aggregate}}}")
        return
    for name, how in aggregate.items():
        if name not in features:
            raise ValueError(f"aggregate names '{name}', which is not a feature here "
                             f"(features: {', '.join(features)})")
        if how in ("min", "max", "mean") and features[name].type != "numeric":
            raise ValueError(f"aggregate: {{{name}: {how}}} needs a numeric feature, not {features[name].type}")


class Split(_Model):
    """How pairs are split into train and test."""

    method: Literal["random", "time", "column", "leave_last_out"] = Field(
        "random", description="random | time (the latest pairs) | column | leave_last_out (each group's — by "
                              "default each query's — latest test_fraction of its pairs, at least one).")
    group: Columns | None = Field(
        None, description="random/time: keep all pairs of one group (order, session, user) on the same side; "
                          "leave_last_out: the unit whose latest pairs are held out [the query].")
    test_fraction: float = Field(0.1, gt=0, lt=1, description="random/time: share of test pairs.")
    seed: int = 0
    column: str | None = Field(None, description="method column: a column with 'train'/'test' values.")
    fraction: float = Field(1.0, gt=0, le=1, description="Down-sample training pairs (test unchanged).")
    validation_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of the training pairs (after `fraction`) held out as the validation "
                                     "split that train and sweep score on; time: the latest, else random (seeded "
                                     "by split.seed). 0 = none.")

    @model_validator(mode="after")
    def _column_needed(self) -> "Split":
        if self.method == "column" and not self.column:
            raise ValueError("method: column needs 'column' (a column with train/test values)")
        _check_columns(self.group, "group")
        if self.method == "column" and self.group is not None:
            raise ValueError("'group' applies to methods random, time and leave_last_out, not column")
        return self


class Model(_Model):
    """Two-tower model (DESIGN §3)."""

    embedding_dim: int = Field(32, ge=1, description="Size of each feature embedding.")
    hidden: list[int] = Field(
        default_factory=lambda: [256, 64], description="Tower MLP sizes; the last is the output size."
    )
    share_embeddings: bool = Field(True, description="item-to-item: towers share embedding tables.")

    @model_validator(mode="after")
    def _hidden_positive(self) -> "Model":
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError("'hidden' must be a non-empty list of positive sizes")
        return self


class EarlyStopping(_Model):
    """Stop training when validation stops improving, and keep the best validated step's weights."""

    patience: int | None = Field(None, ge=0, description="Validation rounds (train.eval_every, else epochs) without "
                                 "an improvement before training stops; the best round's weights are restored "
                                 "into the saved model. 0 or null = off (train to train.steps / train.epochs).")
    min_delta: float = Field(0.0, ge=0, description="Least rise of the metric that counts as an improvement.")
    metric: str | None = Field(None, description="Validation metric watched: recall@K with K in eval.k; default "
                                                 "recall at the largest eval.k.")

    @property
    def on(self) -> bool:
        return bool(self.patience)


class Train(_Model):
    """Optimisation settings. The paper (§4) uses Adagrad, lr 0.01, batch 1024, τ 0.07 and no logQ; the
    defaults keep Adagrad and batch but turn logQ on with lr 0.05, τ 0.05 and 20 epochs, chosen
    against TopPopular on the validation splits of the bundled datasets (docs/studies.md).
    `--lr 0.01 --set train.logq_correction=false` restores the paper's setting."""

    epochs: int = Field(20, ge=1, description="Passes over the training pairs; 20 chosen with lr, τ and logQ on the "
                                              "bundled datasets' validation splits (docs/studies.md).")
    steps: int | None = Field(None, ge=1, description="Stop after this many steps (overrides epochs).")
    batch_size: int = Field(1024, ge=2)
    lr: float = Field(0.05, gt=0, description="Learning rate; 0.05 tuned on the bundled datasets' validation "
                                              "splits (docs/studies.md), the paper's is 0.01.")
    optimizer: Literal["adagrad", "adam"] = "adagrad"
    temperature: float = Field(0.05, gt=0, description="Batch-softmax temperature (eq. 6); 0.05 chosen on the bundled "
                                                       "datasets' validation splits (docs/studies.md), the paper's is 0.07.")
    logq_correction: bool = Field(True, description="Subtract log item frequency from logits (Yi et al. 2019). On: "
                                                    "below TopPopular without it on the bundled datasets' validation "
                                                    "splits (docs/studies.md); false is the paper's eq. 6.")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Tower math: bf16 autocast or fp32; auto = bf16 where the hardware multiplies bf16 "
                            "(CUDA; CPUs with avx512_bf16 or amx_bf16), fp32 elsewhere.")
    threads: int | None = Field(None, ge=1, description="CPU threads; default: 1 for a small model, else the usable "
                                                        "CPUs other processes leave idle (OMP_NUM_THREADS, when set, "
                                                        "is the default). Does not name a study cell.")
    eval_every: int = Field(0, ge=0, description="Validation every N steps; 0 = once per epoch.")
    eval_queries: int = Field(1000, ge=1, description="Validation-split queries sampled for train's validation recall.")
    log_every: int = Field(20, ge=1, description="Write metrics.jsonl every N steps.")
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)


class SSL(_Model):
    """Self-supervised auxiliary task (paper §3)."""

    aug: Augmentation = Field("none", description="none fd so cfm rfm rfm_no_compl cfm_no_dropout no_mask")
    alpha: float = Field(0.3, ge=0, description="Weight of the SSL loss (eq. 5).")
    temperature: float = Field(0.07, gt=0, description="InfoNCE temperature (eq. 3).")
    batch_size: int | None = Field(None, ge=2, description="SSL item batch; default = train.batch_size. Capped at the "
                                   "items it is drawn from (the catalog; popularity: the items with training pairs).")
    mask_size: int | None = Field(
        None, ge=1, description="|F_m|, the features view 1 masks (the seed and its most correlated features; "
        "view 2 masks the rest); default floor(k/2) over the k sparse item features: equal halves, the "
        "paper's stated aim. The paper's literal count, the seed plus floor(k/2) partners, is floor(k/2)+1.")
    dropout: float = Field(0.3, ge=0, lt=1, description="Value dropout rate dr (also FD's rate).")
    item_sampling: Literal["uniform", "popularity"] = Field(
        "uniform", description="SSL item distribution: uniform over the catalog (the paper's choice) or by "
        "training popularity.")
    cfm_seed: Literal["batch", "example"] = Field(
        "batch", description="CFM's seed feature: drawn once per batch (the paper's §3.2 wording; every row "
        "shares one masking pattern) or per example (a gather of the same table; the views then also carry "
        "their pattern, a shortcut the SSL loss can exploit without matching items).")
    false_negatives: Literal["avoid", "keep"] = Field(
        "avoid", description="avoid: draw the SSL batch without replacement when the catalog (popularity: "
        "the items with training pairs) has at least ssl.batch_size items, and mask accidental hits (the "
        "same item in another row) in the SSL loss; keep: i.i.d. draws with replacement and every other row "
        "a negative, as sslkit did before this setting existed (an ablation only).")
    mi: Literal["mi", "nmi"] = Field("mi", description="Correlation measure for CFM: raw or normalized MI.")
    cfm_id: Literal["paper", "exclude", "alone"] = Field(
        "paper", description="An id feature (unique per item) in CFM's masking sets: paper = ranked by MI like any "
        "feature (raw MI puts it in every set: one view never sees the id); exclude = ranked out of the correlation "
        "order (only its own set holds it); alone = as exclude, and its own set masks the id alone (an ablation).")
    mi_path: str | None = Field(None, description="MI JSON from `sslkit mi --out`; computed if omitted.")


QUERY_NODES_DEFAULT = 0  # see HNSW.query_nodes
NORMALIZE_DEFAULT = False  # see HNSW.normalize


class HNSW(_Model):
    """hnswlib settings for `recommend`, `embed --index` and `eval --index hnsw`. A two-tower model's
    queries are out of distribution for a graph of item neighbourhoods, and a few hundred "hub"
    items fill most of their exact top 10; the default graph is centered and every query also scores
    the hubs found from training queries exactly (docs/retrieval.md)."""

    M: int = Field(16, ge=2, description="Graph degree.")
    ef_construction: int = Field(100, ge=1, description="Build breadth (build time grows ~linearly).")
    ef: int = Field(100, ge=1, description="Search breadth (raised to at least K); recall vs queries/s. 100: with the "
                    "hubs, recall@10 1.00 and recall@50 0.999 at 1M items as at ef 400, at 2.6-3x the queries/s "
                    "(docs/retrieval.md).")
    center: bool = Field(True, description="Index the item vectors minus their mean: each query's ranking is "
                                           "unchanged (its scores all shift by q·mean), and the graph no longer "
                                           "has to navigate the narrow cone of learned item vectors.")
    normalize: bool = Field(NORMALIZE_DEFAULT, description="Build and search the graph by angle (the centered "
                            "item vectors scaled to unit length) and rank the ef best candidates by their exact "
                            "inner products (docs/retrieval.md).")
    query_nodes: int = Field(QUERY_NODES_DEFAULT, ge=0, description="Insert this many training queries' vectors "
                             "(a fixed sample of the distinct training queries) as graph nodes and mark them "
                             "deleted: searches walk through them but never return them, which bridges the query "
                             "tower's side and the items' side. 0: items only.")
    hub_queries: int = Field(5000, ge=0, description="Training queries (a fixed sample) whose exact top K (the "
                             "largest eval.k) is computed when the index is built; the items found (the 'hubs' "
                             "that fill most queries' top K on learned vectors) are scored exactly for every query "
                             "besides the graph's candidates. 0: graph only.")
    recall_queries: int = Field(1000, ge=0, description="recommend / embed --index: validation queries (a fixed "
                                "sample) on which the index's recall against exact search is measured when it is "
                                "built and recorded beside it. 0: not measured.")


class Eval(_Model):
    """Evaluation defaults (DESIGN §5)."""

    k: list[int] = Field(default_factory=lambda: [10, 50])
    index: Literal["exact", "hnsw"] = "exact"
    hnsw: HNSW = Field(default_factory=HNSW)
    exclude_seen: bool = Field(False, description="Drop each query's training positives from its results: in eval, "
                                                  "train's validation and the TopPopular row alike.")
    batch_size: int = Field(4096, ge=1)
    head_fraction: float = Field(0.1, gt=0, lt=1, description="Top share of training items = head.")
    ann_queries: int = Field(2000, ge=1, description="hnsw: test queries (a fixed sample) on which ANN recall vs exact is measured.")

    @model_validator(mode="after")
    def _k_positive(self) -> "Eval":
        if not self.k or any(k < 1 for k in self.k):
            raise ValueError("'k' must be a non-empty list of positive integers")
        return self


class Config(_Model):
    """A whole sslkit schema file."""

    name: str = "dataset"
    interactions: Interactions
    items: Items
    queries: Queries = Field(default_factory=Queries)
    split: Split = Field(default_factory=Split)
    model: Model = Field(default_factory=Model)
    train: Train = Field(default_factory=Train)
    ssl: SSL = Field(default_factory=SSL)
    eval: Eval = Field(default_factory=Eval)
    cache_dir: str | None = Field(None, description="Feature-store cache; default .sslkit-cache beside the schema.")
    base_dir: str = Field(".", description="Set by the loader: the schema file's directory.")

    def resolve(self, path: str | None) -> str | None:
        """A data path relative to the schema file ('-' and absolute paths stay as they are)."""
        if path is None or path == "-" or Path(path).is_absolute():
            return path
        return str(Path(self.base_dir) / path)

    def item_id(self) -> str:
        """The catalog's id column (composite keys joined: 'name+size')."""
        return id_column(self.items.id) if self.items.id else self.interactions.item_column()

    def query_id(self) -> str:
        return id_column(self.queries.id) if self.queries.id else self.interactions.query_column()

    def item_to_item(self) -> bool:
        return self.queries.kind == "item"

    @model_validator(mode="after")
    def _event_log_fits(self) -> "Config":
        if self.interactions.pairs is not None and self.queries.kind != "item":
            raise ValueError("interactions.pairs builds item-to-item pairs: it needs queries.kind: item")
        if self.split.method == "leave_last_out" and not self.interactions.time:
            raise ValueError("split.method: leave_last_out needs interactions.time (the column holding the time)")
        return self

    @model_validator(mode="after")
    def _mask_size_fits(self) -> "Config":
        k, size = len(self.items.features), self.ssl.mask_size
        if size is not None and self.ssl.aug not in ("none", "fd", "so") and not size < max(k, 2):
            raise ValueError(f"ssl.mask_size: {size} must be below the number of item features ({k}), so "
                             "that both views keep a feature")
        return self

    @model_validator(mode="after")
    def _early_stopping_fits(self) -> "Config":
        es = self.train.early_stopping
        if not es.on:
            return self
        if self.split.validation_fraction == 0:
            raise ValueError("train.early_stopping needs a validation split: set split.validation_fraction > 0")
        if es.metric is not None and es.metric.removeprefix("val_") not in {f"recall@{k}" for k in self.eval.k}:
            raise ValueError(f"train.early_stopping.metric '{es.metric}' is not a validation metric: use recall@K "
                             f"with K in eval.k {self.eval.k}")
        return self

    @property
    def early_stopping_metric(self) -> str:
        """The validation key early stopping watches, e.g. ``val_recall@50``."""
        es = self.train.early_stopping
        return "val_" + (es.metric.removeprefix("val_") if es.metric else f"recall@{max(self.eval.k)}")

    @model_validator(mode="after")
    def _time_split_needs_time(self) -> "Config":
        if self.split.method == "time" and not self.interactions.time:
            raise ValueError("split.method: time needs interactions.time (the column holding the time)")
        return self


def load_config(path: str | Path, overrides: Sequence[str] = (), flags: Mapping[str, str] | None = None) -> Config:
    """Read a schema file, apply `--set key=value` overrides, validate.

    `flags` maps the dotted keys that command-line flags set (they travel as overrides) to the flag's
    name, so an invalid value is reported as, say, ``--precision: train.precision: …``.

    Raises:
        ConfigError: unreadable file, bad YAML, unknown or invalid keys (with their YAML path).
    """
    path = Path(path)
    try:
        data = path.read_bytes() if path.stat().st_size <= MAX_SCHEMA_BYTES else None
    except FileNotFoundError:
        raise ConfigError(f"{path}: schema file not found", hint="run `sslkit init DATA > schema.yaml`")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read schema file ({e.strerror})")
    if data is None:
        raise ConfigError(f"{path}: schema file is larger than {MAX_SCHEMA_BYTES // 1024} KiB",
                          hint="a schema describes the data; it does not hold it")
    raw = load_yaml(decode_text(data, str(path)), str(path))
    if raw is None:
        raise ConfigError(f"{path}: schema file is empty", hint="run `sslkit init DATA > schema.yaml`")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    raw = apply_overrides(raw, overrides)
    raw["base_dir"] = str(path.resolve().parent)
    return validate(raw, source=str(path), overrides=overrides, flags=flags)


MAX_SCHEMA_BYTES = 1 << 20
MAX_YAML_DEPTH = 64  # schema files are ~4 levels deep; `[` × 900 would exhaust Python's stack
MAX_YAML_NODES = 100_000  # after alias expansion: a "billion laughs" file stops here, not at 5 GB


def decode_text(data: bytes, source: str) -> str:
    """A text file's bytes as UTF-8 (a UTF-8 BOM is allowed); anything else is one ConfigError line."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{source}: the file is UTF-16 encoded", hint="save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{source}: line {line}: byte 0x{data[e.start]:02x} is not UTF-8",
                          hint="save the file as UTF-8")


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader with limits: nesting depth, alias expansion, and duplicate keys refused."""

    source = "<yaml>"

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth, self._total = 0, 0
        self._sizes: dict[int, int] = {}  # id(node) → nodes it expands to

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:
                raise ConfigError(f"{self.source}: line {mark.line + 1}: an alias refers to the node that contains it")
            self._count(self._sizes[id(node)], mark)
            return node
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise ConfigError(f"{self.source}: line {mark.line + 1}: nested deeper than {MAX_YAML_DEPTH} levels",
                              hint="a schema is a few levels deep; check the brackets")
        before = self._total
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._count(1, mark)
        self._sizes[id(node)] = self._total - before
        return node

    def _count(self, n: int, mark: Any) -> None:
        self._total += n
        if self._total > MAX_YAML_NODES:
            raise ConfigError(f"{self.source}: line {mark.line + 1}: aliases expand to more than "
                              f"{MAX_YAML_NODES:,} values", hint="write the values out instead of nesting aliases")

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise ConfigError(f"{self.source}: duplicate key '{key}' at lines {seen[key]} and {line}",
                                  hint="keep one of them")
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML safely (no tags, bounded depth and alias expansion, no duplicate keys).

    Raises:
        ConfigError: invalid YAML (with line and column), or a limit exceeded.
    """
    loader = _Loader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}:{where}: {problem}")
    finally:
        loader.dispose()


def _bools_as_numbers(raw: Any, model: type[BaseModel], loc: list[str]) -> str | None:
    """The YAML path of a true/false given where a number is expected (pydantic would take it as 1/0)."""
    if not isinstance(raw, Mapping):
        return None
    for name, value in raw.items():
        field = model.model_fields.get(str(name))
        if field is None:
            continue
        kinds = _leaf_types(field.annotation)
        here = [*loc, str(name)]
        values = value if isinstance(value, list) else [value]
        if kinds & {int, float} and bool not in kinds and any(isinstance(v, bool) for v in values):
            return ".".join(here)
        for sub in kinds:
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                if name == "features" and isinstance(value, Mapping):
                    for fname, fval in value.items():
                        if (bad := _bools_as_numbers(fval, sub, [*here, str(fname)])):
                            return bad
                elif (bad := _bools_as_numbers(value, sub, here)):
                    return bad
    return None


def _leaf_types(ann: Any) -> set[Any]:
    import typing

    args = typing.get_args(ann)
    if not args:
        return {ann}
    if typing.get_origin(ann) is Literal:
        return set()
    out: set[Any] = set()
    for a in args:
        out |= _leaf_types(a)
    return out


def validate(raw: Mapping[str, Any], *, source: str, overrides: Sequence[str] = (),
             flags: Mapping[str, str] | None = None) -> Config:
    """Validate a raw mapping into a Config; errors name the YAML path and where the value came from."""
    if (bad := _bools_as_numbers(raw, Config, [])):
        from_set = any(o.split("=", 1)[0].strip() == bad for o in overrides)
        origin = (flags or {}).get(bad) or ("--set" if from_set else source)
        raise ConfigError(f"{origin}: {bad}: expected a number, got true/false")
    try:
        return Config.model_validate(dict(raw))
    except ValidationError as e:
        err = _first_error(e.errors())
        loc = [str(p) for p in err["loc"]]
        dotted = ".".join(loc)
        # a cross-section check (Config's own validators) names its key at the start of its message
        key = dotted or str(err["msg"]).removeprefix("Value error, ").split(":")[0]
        from_set = any(o.split("=", 1)[0].strip() == key for o in overrides)
        origin = (flags or {}).get(key) or ("--set" if from_set else source)
        raise ConfigError(f"{origin}: {dotted + ': ' if dotted else ''}{_describe(err, loc)}")


def _first_error(errors: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The error to report: a key in error whose misspelling is also there reports the misspelling
    (`interaction:` → "unknown key 'interaction' — did you mean 'interactions'?"), not the gap."""
    first = errors[0]
    if first["type"] != "extra_forbidden" and first["loc"]:  # "missing", or a validator's "required"
        parent, name = list(first["loc"][:-1]), str(first["loc"][-1])
        for err in errors:
            if (err["type"] == "extra_forbidden" and list(err["loc"][:-1]) == parent
                    and difflib.get_close_matches(str(err["loc"][-1]), [name], n=1)):
                return {**err, "suggest": name}
    return first


def _describe(err: Mapping[str, Any], loc: list[str]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = sorted(_fields_at(loc[:-1]))
        close = [err["suggest"]] if "suggest" in err else difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
        return f"unknown key '{loc[-1]}' — {hint}"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind in ("literal_error", "enum"):
        return f"{msg} (got {err.get('input')!r})"
    return msg


def _fields_at(loc: list[str]) -> set[str]:
    """Names of the fields allowed at a YAML path (for did-you-mean hints)."""
    model: type[BaseModel] = Config
    i = 0
    while i < len(loc):
        field = model.model_fields.get(loc[i])
        if field is None:
            return set(model.model_fields)
        ann = field.annotation
        sub = [a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type) and issubclass(a, BaseModel)]
        if sub:  # a section, or an optional one (`pairs: PairRule | None`)
            model = sub[0]
        elif loc[i] == "features":
            model, i = Feature, i + 1  # skip the feature's name
        else:
            return set(model.model_fields)
        i += 1
    return set(model.model_fields) - {"base_dir"}


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `key.sub=value` overrides (values parsed as YAML) to a nested mapping (copied)."""
    out: dict[str, Any] = json.loads(json.dumps(raw, default=str))
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set ssl.alpha=0.3")
        try:
            parsed = load_yaml(value, f"--set {key}") if value.strip() else None
        except ConfigError:
            raise ConfigError(f"--set {key}: cannot parse value {value[:80]!r}")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a section")
            node = child
        node[parts[-1]] = parsed
    return out


def dump_config(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (saved with every run)."""
    return cfg.model_dump(mode="json")


def json_schema() -> dict[str, Any]:
    """JSON Schema of the schema file (written to schemas/sslkit.schema.json)."""
    schema = Config.model_json_schema()
    schema["properties"].pop("base_dir", None)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "sslkit schema"
    return schema


if __name__ == "__main__":  # python -m sslkit.config > schemas/sslkit.schema.json
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
