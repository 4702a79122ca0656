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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sslkit.errors import ConfigError

FeatureType = Literal["categorical", "multi_categorical", "text", "numeric"]
FileFormat = Literal["csv", "parquet", "ndjson"]
Augmentation = Literal[
    "none", "fd", "so", "cfm", "rfm", "rfm_no_compl", "cfm_no_dropout", "no_mask"
]

_DEFAULT_MAX_LEN = {"categorical": 1, "numeric": 1, "multi_categorical": 16, "text": 32}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class Interactions(_Model):
    """Positive (query, item) pairs: a click, a co-view, an install."""

    path: str = Field(description="CSV / Parquet / NDJSON file, a glob, or '-' for stdin.")
    format: FileFormat | None = Field(None, description="Inferred from the extension when omitted.")
    query: str = Field(description="Column holding the query id (an item id in item-to-item mode).")
    item: str = Field(description="Column holding the item id.")
    time: str | None = Field(None, description="Optional time column (split.method: time).")
    on_unknown_item: Literal["drop", "error"] = Field(
        "drop", description="Pairs whose item (or item query) is not in the catalog: drop or error."
    )


class Items(_Model):
    """The catalog: one row per item; it is the retrieval corpus."""

    path: str | None = Field(None, description="Items file; omit to read features from interaction rows.")
    format: FileFormat | None = None
    id: str | None = Field(None, description="Id column; defaults to interactions.item.")
    features: dict[str, Feature] = Field(description="Item features by name.", min_length=1)


class Queries(_Model):
    """Where query features come from."""

    kind: Literal["item", "entity"] = Field(
        "item", description="item: item-to-item (features from the catalog); entity: users etc."
    )
    path: str | None = Field(None, description="entity: its own table; omit to use interaction columns.")
    format: FileFormat | None = None
    id: str | None = Field(None, description="entity: id column; defaults to interactions.query.")
    features: dict[str, Feature] | None = Field(None, description="entity: query features by name.")

    @model_validator(mode="after")
    def _entity_needs_features(self) -> "Queries":
        if self.kind == "entity" and not self.features:
            raise ValueError("kind: entity needs 'features' (at least one query feature)")
        if self.kind == "item" and (self.features or self.path):
            raise ValueError("kind: item takes its features from the catalog; drop 'path'/'features'")
        return self


class Split(_Model):
    """How pairs are split into train and test."""

    method: Literal["random", "time", "column"] = "random"
    test_fraction: float = Field(0.1, gt=0, lt=1, description="random/time: share of test pairs.")
    seed: int = 0
    column: str | None = Field(None, description="method column: a column with 'train'/'test' values.")
    fraction: float = Field(1.0, gt=0, le=1, description="Down-sample training pairs (test unchanged).")

    @model_validator(mode="after")
    def _column_needed(self) -> "Split":
        if self.method == "column" and not self.column:
            raise ValueError("method: column needs 'column' (a column with train/test values)")
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


class Train(_Model):
    """Optimisation settings (paper §4: Adagrad, lr 0.01, batch 1024, tau 0.07)."""

    epochs: int = Field(5, ge=1)
    steps: int | None = Field(None, ge=1, description="Stop after this many steps (overrides epochs).")
    batch_size: int = Field(1024, ge=2)
    lr: float = Field(0.01, gt=0)
    optimizer: Literal["adagrad", "adam"] = "adagrad"
    temperature: float = Field(0.07, gt=0, description="Batch-softmax temperature (eq. 6).")
    logq_correction: bool = Field(False, description="Subtract log item frequency from logits.")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Tower math: bf16 autocast or fp32; auto = bf16 where the hardware multiplies bf16 "
                            "(CUDA, CPUs with AMX), fp32 elsewhere.")
    eval_every: int = Field(0, ge=0, description="Validation every N steps; 0 = once per epoch.")
    eval_queries: int = Field(1000, ge=1, description="Test queries sampled for validation recall.")
    log_every: int = Field(20, ge=1, description="Write metrics.jsonl every N steps.")


class SSL(_Model):
    """Self-supervised auxiliary task (paper §3)."""

    aug: Augmentation = Field("none", description="none fd so cfm rfm rfm_no_compl cfm_no_dropout no_mask")
    alpha: float = Field(0.3, ge=0, description="Weight of the SSL loss (eq. 5).")
    temperature: float = Field(0.07, gt=0, description="InfoNCE temperature (eq. 3).")
    batch_size: int | None = Field(None, ge=2, description="SSL item batch; default = train.batch_size.")
    mask_size: int | None = Field(None, ge=1, description="|F_m|; default floor(k/2).")
    dropout: float = Field(0.3, ge=0, lt=1, description="Value dropout rate dr (also FD's rate).")
    item_sampling: Literal["uniform", "popularity"] = "uniform"
    mi: Literal["mi", "nmi"] = Field("mi", description="Correlation measure for CFM: raw or normalized MI.")
    mi_path: str | None = Field(None, description="MI JSON from `sslkit mi --out`; computed if omitted.")


class HNSW(_Model):
    """hnswlib settings. Query breadth `ef` buys more recall per second than build breadth: on 1M
    learned 64-d vectors, ef_construction 100 → 200 doubles the build (84 → 154 s on 2 cores) for
    +0.02–0.03 recall@50, while ef 100 → 400 lifts recall@50 from 0.61 to 0.88 at 3.3k queries/s."""

    M: int = Field(16, ge=2, description="Graph degree.")
    ef_construction: int = Field(100, ge=1, description="Build breadth (build time grows ~linearly).")
    ef: int = Field(400, ge=1, description="Search breadth (raised to at least K); recall vs queries/s.")


class Eval(_Model):
    """Evaluation defaults (DESIGN §5)."""

    k: list[int] = Field(default_factory=lambda: [10, 50])
    index: Literal["exact", "hnsw"] = "exact"
    hnsw: HNSW = Field(default_factory=HNSW)
    exclude_seen: bool = False
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
        return self.items.id or self.interactions.item

    def query_id(self) -> str:
        return self.queries.id or self.interactions.query

    def item_to_item(self) -> bool:
        return self.queries.kind == "item"


def load_config(path: str | Path, overrides: Sequence[str] = (), flags: Mapping[str, str] | None = None) -> Config:
    """Read a schema file, apply `--set key=value` overrides, validate.

    `flags` maps the dotted keys that command-line flags set (they travel as overrides) to the flag's
    name, so an invalid value is reported as, say, ``--precision: train.precision: …``.

    Raises:
        ConfigError: unreadable file, bad YAML, unknown or invalid keys (with their YAML path).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: schema file not found", hint="run `sslkit init DATA > schema.yaml`")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read schema file ({e.strerror})")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem}")
    if raw is None:
        raise ConfigError(f"{path}: schema file is empty", hint="run `sslkit init DATA > schema.yaml`")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    raw = apply_overrides(raw, overrides)
    raw["base_dir"] = str(path.resolve().parent)
    return validate(raw, source=str(path), overrides=overrides, flags=flags)


def validate(raw: Mapping[str, Any], *, source: str, overrides: Sequence[str] = (),
             flags: Mapping[str, str] | None = None) -> Config:
    """Validate a raw mapping into a Config; errors name the YAML path and where the value came from."""
    try:
        return Config.model_validate(dict(raw))
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(p) for p in err["loc"]]
        dotted = ".".join(loc)
        from_set = any(o.split("=", 1)[0].strip() == dotted for o in overrides)
        origin = (flags or {}).get(dotted) or ("--set" if from_set else source)
        raise ConfigError(f"{origin}: {dotted or '(top level)'}: {_describe(err, loc)}")


def _describe(err: Mapping[str, Any], loc: list[str]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = sorted(_fields_at(loc[:-1]))
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
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
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
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
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse value {value!r}")
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
