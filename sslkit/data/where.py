"""`interactions.where` is data, not code: a row condition parsed here, by sslkit, before anything runs.

A schema is a file people share and download, so the condition it holds must not be able to read a
file, open a URL or exhaust the process. The text is parsed by the small recursive-descent parser
below into a tree of an allow-listed grammar, and the tree is turned into a Polars expression
directly: the text itself never reaches any SQL engine. The grammar:

    condition   := or
    or          := and (OR and)*
    and         := not (AND not)*
    not         := NOT not | predicate
    predicate   := concat [ cmp concat | [NOT] IN (value, …) | [NOT] BETWEEN concat AND concat
                           | [NOT] LIKE 'pattern' | [NOT] ILIKE 'pattern' | IS [NOT] NULL ]
    concat      := sum (|| sum)*
    sum         := product ((+ | -) product)*
    product     := unary ((* | / | %) unary)*
    unary       := (- | +) unary | primary
    primary     := number | 'text' | TRUE | FALSE | NULL | column | "quoted column"
                 | function(arg, …) | CAST(concat AS type) | EXTRACT(part FROM concat) | (condition)

`cmp` is one of = == <> != < <= > >=. Functions: `FUNCTIONS` below. Everything else — a subquery,
a table function such as read_csv, a comment, a second statement — is refused with one line naming
the construct. Size and depth are capped (`MAX_TERMS`, `MAX_DEPTH`, `MAX_VALUES`, `MAX_CHARS`) far
below what Polars survives: its own SQL parser turned 5,000 `OR` terms into minutes and gigabytes,
and 10,000 into a segmentation fault. AND/OR chains become balanced trees (depth log2 n), so even a
condition at the caps is shallow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MAX_CHARS = 1_000_000  # the schema file itself is capped at 1 MiB
MAX_TERMS = 5_000      # parts: operators, columns, values, calls (IN-list values counted apart)
MAX_VALUES = 100_000   # values in all IN lists together (one flat `is_in`, cheap)
MAX_DEPTH = 48         # nesting of parentheses, NOT, signs, calls and arithmetic

EXAMPLE = "e.g. \"rating >= 4 AND status = 'completed'\""


class WhereError(ValueError):
    """A condition outside the grammar; the message names the construct (pydantic shows it as is)."""


# name → (min args, max args); CAST and EXTRACT have their own syntax
FUNCTIONS: dict[str, tuple[int, int]] = {
    "lower": (1, 1), "upper": (1, 1), "length": (1, 1), "char_length": (1, 1), "abs": (1, 1),
    "coalesce": (2, 16), "substr": (2, 3), "substring": (2, 3), "trim": (1, 1), "ltrim": (1, 1),
    "rtrim": (1, 1), "round": (1, 2), "floor": (1, 1), "ceil": (1, 1), "year": (1, 1), "month": (1, 1),
    "day": (1, 1), "hour": (1, 1), "minute": (1, 1), "second": (1, 1), "weekday": (1, 1),
    "date_part": (2, 2), "starts_with": (2, 2), "ends_with": (2, 2),
}
DATE_PARTS = {"year", "quarter", "month", "week", "day", "hour", "minute", "second", "weekday"}
TYPES = {"int": "Int64", "integer": "Int64", "bigint": "Int64", "smallint": "Int64", "float": "Float64",
         "double": "Float64", "real": "Float64", "numeric": "Float64", "decimal": "Float64", "text": "String",
         "varchar": "String", "string": "String", "char": "String", "boolean": "Boolean", "bool": "Boolean",
         "date": "Date", "timestamp": "Datetime", "datetime": "Datetime"}
KEYWORDS = {"and", "or", "not", "in", "between", "like", "ilike", "is", "null", "true", "false", "cast", "as",
            "extract", "from"}
# words that only make sense in what the grammar refuses: named in the refusal
REFUSED = {"select": "a subquery (SELECT)", "with": "a subquery (WITH)", "union": "UNION", "exists": "EXISTS",
           "values": "VALUES", "table": "a table reference", "join": "a JOIN", "case": "CASE",
           "over": "a window function (OVER)", "interval": "INTERVAL", "any": "ANY", "all": "ALL",
           "some": "SOME", "into": "INTO", "insert": "a statement (INSERT)", "update": "a statement (UPDATE)",
           "delete": "a statement (DELETE)", "drop": "a statement (DROP)", "create": "a statement (CREATE)",
           "copy": "a statement (COPY)", "attach": "a statement (ATTACH)", "pragma": "a statement (PRAGMA)"}
ALLOWED = ("a condition may use columns, values, comparisons, + - * / % ||, AND/OR/NOT, IN (…), BETWEEN, "
           "LIKE/ILIKE, IS [NOT] NULL, CAST, EXTRACT and the functions " + ", ".join(sorted(FUNCTIONS)))

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>--|/\*)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|<>|!=|==|\|\||[=<>+\-*/%(),])
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    kind: str   # number string quoted word op end
    text: str
    at: int     # character offset, 1-based in messages


@dataclass(frozen=True)
class Node:
    """One node of a parsed condition: `op` is the construct, `args` its operands, `value` a literal."""

    op: str
    args: tuple["Node", ...] = ()
    value: Any = None


@dataclass
class _Budget:
    terms: int = 0
    values: int = 0
    names: set[str] = field(default_factory=set)


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch in "'\"":
                kind = "text value ('…')" if ch == "'" else 'quoted column name ("…")'
                raise WhereError(f"not a valid condition: an unterminated {kind} at character {pos + 1} — {EXAMPLE}")
            what = "';' (a second statement)" if ch == ";" else f"the character {ch!r}"
            raise WhereError(f"{what} at character {pos + 1} is not allowed — {ALLOWED}")
        kind = m.lastgroup or ""
        if kind == "comment":
            raise WhereError(f"a comment ('{m.group()}') at character {pos + 1} is not allowed — write the condition "
                             "alone")
        if kind != "ws":
            out.append(Token(kind, m.group(), pos + 1))
        pos = m.end()
    out.append(Token("end", "", len(text) + 1))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0
        self.budget = _Budget()

    # -- token helpers ---------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def word(self, ahead: int = 0) -> str:
        t = self.peek(ahead)
        return t.text.lower() if t.kind == "word" else ""

    def take(self) -> Token:
        t = self.peek()
        self.i += 1
        return t

    def accept_word(self, *words: str) -> bool:
        if self.word() in words:
            self.i += 1
            return True
        return False

    def accept_op(self, *ops: str) -> str | None:
        t = self.peek()
        if t.kind == "op" and t.text in ops:
            self.i += 1
            return t.text
        return None

    def expect_op(self, op: str, context: str) -> None:
        if not self.accept_op(op):
            self.fail(f"expected '{op}' {context}")

    def fail(self, what: str) -> None:
        t = self.peek()
        got = "the end of the condition" if t.kind == "end" else f"'{_clip(t.text)}' at character {t.at}"
        raise WhereError(f"not a valid condition: {what}, got {got} — {EXAMPLE}")

    def node(self, op: str, *args: Node, value: Any = None) -> Node:
        self.budget.terms += 1
        if self.budget.terms > MAX_TERMS:
            raise WhereError(f"more than {MAX_TERMS:,} parts (columns, values, operators) — a condition is a short "
                             f"filter; a long list of values fits one IN (…), up to {MAX_VALUES:,}")
        return Node(op, args, value)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise WhereError(f"nested deeper than {MAX_DEPTH} levels — simplify the condition")

    # -- grammar ---------------------------------------------------------------------------------
    def condition(self) -> Node:
        self.enter()
        terms = [self.conjunction()]
        while self.accept_word("or"):
            terms.append(self.conjunction())
        self.depth -= 1
        return terms[0] if len(terms) == 1 else self.node("or", *terms)

    def conjunction(self) -> Node:
        terms = [self.negation()]
        while self.accept_word("and"):
            terms.append(self.negation())
        return terms[0] if len(terms) == 1 else self.node("and", *terms)

    def negation(self) -> Node:
        if self.accept_word("not"):
            self.enter()
            inner = self.negation()
            self.depth -= 1
            return self.node("not", inner)
        return self.predicate()

    def predicate(self) -> Node:
        left = self.concat()
        if (op := self.accept_op("=", "==", "<>", "!=", "<", "<=", ">", ">=")):
            right = self.concat()
            if self.peek().kind == "op" and self.peek().text in ("=", "==", "<>", "!=", "<", "<=", ">", ">="):
                self.fail("one comparison per term (join them with AND)")
            return self.node({"==": "=", "!=": "<>"}.get(op, op), left, right)
        negate = self.word() == "not" and self.word(1) in ("in", "between", "like", "ilike")
        if negate:
            self.i += 1
        if self.accept_word("in"):
            out = self.node("in", left, value=self.value_list())
        elif self.accept_word("between"):
            low = self.concat()
            if not self.accept_word("and"):
                self.fail("expected AND in BETWEEN … AND …")
            out = self.node("between", left, low, self.concat())
        elif (kind := self.word()) in ("like", "ilike"):
            self.i += 1
            t = self.take()
            if t.kind != "string":
                self.i -= 1
                self.fail(f"{kind.upper()} takes a quoted pattern, e.g. 'abc%'")
            out = self.node(kind, left, value=_unquote(t.text, "'"))
        elif self.accept_word("is"):
            neg = self.accept_word("not")
            if not self.accept_word("null"):
                self.fail("expected NULL after IS" + (" NOT" if neg else ""))
            return self.node("is_not_null" if neg else "is_null", left)
        else:
            return left
        return self.node("not", out) if negate else out

    def value_list(self) -> list[Any]:
        if self.word(1) in REFUSED:
            self.i += 1
            self.refuse(self.word())
        self.expect_op("(", "after IN")
        values: list[Any] = []
        while True:
            sign = -1 if self.accept_op("-") else 1
            t = self.take()
            if t.kind == "number":
                values.append(sign * _number(t.text))
            elif t.kind == "string" and sign == 1:
                values.append(_unquote(t.text, "'"))
            elif t.kind == "word" and t.text.lower() in ("true", "false") and sign == 1:
                values.append(t.text.lower() == "true")
            else:
                self.i -= 1
                if t.kind == "word" and t.text.lower() == "null":
                    self.fail("NULL in an IN list never matches (write `… OR column IS NULL`)")
                if t.kind == "word" and t.text.lower() in REFUSED:
                    self.refuse(t.text.lower())
                self.fail("IN takes a list of values: numbers, 'text', TRUE or FALSE")
            self.budget.values += 1
            if self.budget.values > MAX_VALUES:
                raise WhereError(f"more than {MAX_VALUES:,} values in IN lists — filter the file before sslkit "
                                 "reads it")
            if not self.accept_op(","):
                break
        self.expect_op(")", "to close the IN list")
        kinds = {type(v) is str for v in values}
        if len(kinds) > 1:
            self.i -= 1
            self.fail("an IN list mixes text and numbers")
        return values

    def concat(self) -> Node:
        return self.chain(self.sum, ("||",))

    def sum(self) -> Node:
        return self.chain(self.product, ("+", "-"))

    def product(self) -> Node:
        return self.chain(self.unary, ("*", "/", "%"))

    def chain(self, operand: Any, ops: tuple[str, ...]) -> Node:
        left = operand()
        levels = 0
        while (op := self.accept_op(*ops)):
            levels += 1
            self.enter()  # a left-deep chain is as deep as it is long
            left = self.node(op, left, operand())
        self.depth -= levels
        return left

    def unary(self) -> Node:
        if (op := self.accept_op("-", "+")):
            self.enter()
            inner = self.unary()
            self.depth -= 1
            return self.node("neg", inner) if op == "-" else inner
        return self.primary()

    def primary(self) -> Node:
        t = self.peek()
        if t.kind == "number":
            self.i += 1
            return self.node("lit", value=_number(t.text))
        if t.kind == "string":
            self.i += 1
            return self.node("lit", value=_unquote(t.text, "'"))
        if t.kind == "quoted":
            self.i += 1
            return self.column(_unquote(t.text, '"'))
        if t.kind == "op" and t.text == "(":
            self.i += 1
            if self.word() in REFUSED:
                self.refuse(self.word())
            inner = self.condition()
            self.expect_op(")", "to close '('")
            return inner
        if t.kind != "word":
            self.fail("expected a column, a value or '('")
        w = t.text.lower()
        if w in ("true", "false", "null"):
            self.i += 1
            return self.node("lit", value=None if w == "null" else w == "true")
        if w in REFUSED:
            self.refuse(w)
        if w == "cast" and self.peek(1).text == "(":
            return self.cast()
        if w == "extract" and self.peek(1).text == "(":
            return self.extract()
        if self.peek(1).kind == "op" and self.peek(1).text == "(":
            return self.call(w, t)
        if w in KEYWORDS:
            self.fail("expected a column, a value or '('")
        self.i += 1
        return self.column(t.text)

    def column(self, name: str) -> Node:
        self.budget.names.add(name)
        return self.node("col", value=name)

    def refuse(self, word: str) -> None:
        raise WhereError(f"{REFUSED[word]} is not allowed at character {self.peek().at} — {ALLOWED}")

    def call(self, name: str, t: Token) -> Node:
        if name not in FUNCTIONS:
            raise WhereError(f"the function '{_clip(t.text)}' (character {t.at}) is not allowed — {ALLOWED}")
        self.i += 2
        self.enter()
        args: list[Node] = []
        if not self.accept_op(")"):
            args.append(self.concat_or_condition())
            while self.accept_op(","):
                args.append(self.concat_or_condition())
            self.expect_op(")", f"to close {name}(")
        self.depth -= 1
        low, high = FUNCTIONS[name]
        if not low <= len(args) <= high:
            want = str(low) if low == high else f"{low} to {high}"
            raise WhereError(f"{name}() takes {want} argument{'s' if high > 1 else ''}, got {len(args)} "
                             f"(character {t.at})")
        if name == "date_part":
            part = args[0].value if args[0].op == "lit" and isinstance(args[0].value, str) else None
            if part is None or part.lower() not in DATE_PARTS:
                raise WhereError(f"date_part() takes a quoted part first, one of {', '.join(sorted(DATE_PARTS))}")
            return self.node("part", args[1], value=part.lower())
        for k, arg in enumerate(args[1:], 1):
            if name in ("substr", "substring", "round") and not _int_literal(arg):
                raise WhereError(f"{name}() takes whole numbers after its first argument (argument {k + 1})")
            if name in ("starts_with", "ends_with") and not (arg.op == "lit" and isinstance(arg.value, str)):
                raise WhereError(f"{name}() takes a quoted text as its second argument")
        return self.node("call", *args, value=name)

    def concat_or_condition(self) -> Node:
        return self.condition()

    def cast(self) -> Node:
        self.i += 2
        self.enter()
        inner = self.concat()
        if not self.accept_word("as"):
            self.fail("expected AS in CAST(… AS type)")
        t = self.take()
        if t.kind != "word" or t.text.lower() not in TYPES:
            self.i -= 1
            self.fail(f"CAST takes one of the types {', '.join(sorted(TYPES))}")
        self.expect_op(")", "to close CAST(")
        self.depth -= 1
        return self.node("cast", inner, value=TYPES[t.text.lower()])

    def extract(self) -> Node:
        self.i += 2
        self.enter()
        part = self.word()
        if part not in DATE_PARTS:
            self.fail(f"EXTRACT takes one of {', '.join(sorted(DATE_PARTS))}")
        self.i += 1
        if not self.accept_word("from"):
            self.fail("expected FROM in EXTRACT(part FROM …)")
        inner = self.concat()
        self.expect_op(")", "to close EXTRACT(")
        self.depth -= 1
        return self.node("part", inner, value=part)


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "…"


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def _unquote(text: str, quote: str) -> str:
    return text[1:-1].replace(quote * 2, quote)


def _int_literal(node: Node) -> bool:
    if node.op == "neg":
        return _int_literal(node.args[0])
    return node.op == "lit" and type(node.value) is int


def parse(text: str) -> Node:
    """Parse a condition into a tree of the allowed grammar (pure Python: nothing is evaluated).

    Raises:
        WhereError: the text is empty, too large or too deep, or uses a construct outside the grammar
            (a subquery, a table function, a comment, a second statement); the message names it.
    """
    if len(text) > MAX_CHARS:
        raise WhereError(f"the condition is longer than {MAX_CHARS:,} characters")
    if not text.strip():
        raise WhereError(f"the condition is empty — {EXAMPLE}")
    p = _Parser(text)
    tree = p.condition()
    if p.peek().kind != "end":
        w = p.word()
        if w in REFUSED or w == "from":
            raise WhereError(f"{REFUSED.get(w, 'FROM')} is not allowed at character {p.peek().at} — {ALLOWED}")
        p.fail("expected AND, OR or the end of the condition")
    return tree


def columns_of(tree: Node) -> list[str]:
    """The column names a condition reads, in order of first use."""
    seen: dict[str, None] = {}
    stack = [tree]
    while stack:
        n = stack.pop()
        if n.op == "col":
            seen.setdefault(n.value, None)
        stack.extend(reversed(n.args))
    return list(seen)


def to_polars(tree: Node) -> Any:
    """The Polars expression of a parsed condition (built node by node; no SQL text involved)."""
    import polars as pl

    def balanced(parts: list[Any], op: str) -> Any:
        if len(parts) == 1:
            return parts[0]
        mid = len(parts) // 2
        left, right = balanced(parts[:mid], op), balanced(parts[mid:], op)
        return left | right if op == "or" else left & right

    def build(n: Node) -> Any:
        a = [build(x) for x in n.args]
        op = n.op
        if op == "lit":
            return pl.lit(n.value)
        if op == "col":
            return pl.col(n.value)
        if op in ("or", "and"):
            return balanced(a, op)
        if op == "not":
            return a[0].not_()
        if op in _BINARY:
            return _BINARY[op](a[0], a[1])
        if op == "neg":
            return -a[0]
        if op == "in":
            return a[0].is_in(list(n.value))
        if op == "between":
            return (a[0] >= a[1]) & (a[0] <= a[2])
        if op in ("like", "ilike"):
            return a[0].str.contains(_like_regex(n.value, op == "ilike"))
        if op == "is_null":
            return a[0].is_null()
        if op == "is_not_null":
            return a[0].is_not_null()
        if op == "cast":
            return a[0].cast(getattr(pl, n.value))
        if op == "part":
            return getattr(a[0].dt, n.value)()
        return _call(n.value, a, n.args, pl)

    return build(tree)


_BINARY: dict[str, Any] = {
    "=": lambda x, y: x == y, "<>": lambda x, y: x != y, "<": lambda x, y: x < y, "<=": lambda x, y: x <= y,
    ">": lambda x, y: x > y, ">=": lambda x, y: x >= y, "+": lambda x, y: x + y, "-": lambda x, y: x - y,
    "*": lambda x, y: x * y, "/": lambda x, y: x / y, "%": lambda x, y: x % y,
    "||": lambda x, y: x.cast(_string()) + y.cast(_string()),
}


def _string() -> Any:
    import polars as pl

    return pl.String


def _call(name: str, a: list[Any], raw: tuple[Node, ...], pl: Any) -> Any:
    x = a[0]
    if name == "lower":
        return x.str.to_lowercase()
    if name == "upper":
        return x.str.to_uppercase()
    if name in ("length", "char_length"):
        return x.str.len_chars()
    if name == "abs":
        return x.abs()
    if name == "coalesce":
        return pl.coalesce(a)
    if name in ("substr", "substring"):
        start = _literal_int(raw[1])
        length = _literal_int(raw[2]) if len(raw) > 2 else None
        return x.str.slice(max(start - 1, 0), None if length is None else max(length + min(start - 1, 0), 0))
    if name == "trim":
        return x.str.strip_chars()
    if name == "ltrim":
        return x.str.strip_chars_start()
    if name == "rtrim":
        return x.str.strip_chars_end()
    if name == "round":
        return x.round(_literal_int(raw[1]) if len(raw) > 1 else 0)
    if name == "floor":
        return x.floor()
    if name == "ceil":
        return x.ceil()
    if name == "starts_with":
        return x.str.starts_with(raw[1].value)
    if name == "ends_with":
        return x.str.ends_with(raw[1].value)
    return getattr(x.dt, name)()  # year month day hour minute second weekday


def _literal_int(node: Node) -> int:
    return -_literal_int(node.args[0]) if node.op == "neg" else int(node.value)


_REGEX_SPECIAL = set("\\.+*?()|[]{}^$")


def _like_regex(pattern: str, insensitive: bool) -> str:
    """SQL LIKE → an anchored regex: % any run, _ one character, everything else literal."""
    body = "".join(".*" if c == "%" else "." if c == "_" else "\\" + c if c in _REGEX_SPECIAL else c for c in pattern)
    return f"(?s{'i' if insensitive else ''})^{body}$"


def where_expr(text: str) -> Any:
    """`parse` then `to_polars`: the condition as a Polars expression."""
    return to_polars(parse(text))
