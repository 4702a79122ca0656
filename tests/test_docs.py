"""Docs that are checked: the command reference names every command and option, relative links
in README.md and docs/*.md resolve (file and heading), and the schema guide names every key of
schemas/reference.yaml. Each checker is also run on a small bad case, so none passes vacuously."""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

import sslkit.cli

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# ---------------------------------------------------------------- the checkers

def cli_surface() -> dict[str, list[str]]:
    """Command name → its option names (`--x` and `-x` forms, secondary ones like `--raw` too);
    the key "" holds the options of `sslkit` itself."""
    group = typer.main.get_command(sslkit.cli.app)
    def names(params: list[Any]) -> list[str]:
        return [o for p in params if p.param_type_name == "option" for o in (*p.opts, *p.secondary_opts)
                if o.startswith("--")]
    surface = {"": names(group.params)}
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        surface[name] = names(command.params)
    return surface


def command_sections(text: str) -> dict[str, str]:
    """The reference's `## \\`sslkit NAME\\`` sections, by command name; "" is the text before the first."""
    parts = re.split(r"^## `sslkit (\S+)`\s*$", text, flags=re.MULTILINE)
    sections = {"": parts[0]}
    for name, body in zip(parts[1::2], parts[2::2]):
        sections[name] = body
    return sections


def undocumented(surface: dict[str, list[str]], text: str) -> list[str]:
    """What the command reference lacks: a command without its section, or an option not named (as
    code, `--opt`) in its command's section (top-level options: anywhere on the page)."""
    sections = command_sections(text)
    missing = []
    for command, options in surface.items():
        if command and command not in sections:
            missing.append(f"sslkit {command}")
            continue
        body = text if command == "" else sections[command]
        for option in options:
            if not re.search(r"`[^`\n]*" + re.escape(option) + r"(?![\w-])[^`\n]*`", body):
                missing.append(f"sslkit {command} {option}".replace("  ", " "))
    return missing


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its text without markup, lower-cased, punctuation
    dropped (letters, digits, spaces, `-` and `_` kept), spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = text.strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def strip_fences(text: str) -> str:
    """Markdown without its fenced code blocks, where a `# x` is no heading and `[x](y)` no link."""
    return re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.MULTILINE | re.DOTALL)


def strip_code(text: str) -> str:
    """Markdown without fenced code blocks and inline code."""
    return re.sub(r"`[^`\n]*`", "", strip_fences(text))


def anchors(text: str) -> set[str]:
    """Every heading anchor of a page, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for line in strip_fences(text).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = github_anchor(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path, text: str | None = None) -> list[str]:
    """Relative links of a page whose file is missing, or whose `#anchor` no heading of the target has."""
    text = page.read_text() if text is None else text
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", strip_code(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{page.name}: {target} (no such file)")
        elif anchor and dest.suffix == ".md":
            dest_text = text if dest == page else dest.read_text()
            if anchor not in anchors(dest_text):
                broken.append(f"{page.name}: {target} (no such heading)")
    return broken


def yaml_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every key of a YAML mapping; a feature map's names become `NAME`."""
    keys: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if prefix.endswith("features."):  # `key` names a feature: its options are the keys
                keys.extend(yaml_keys(value, prefix + "NAME."))
            else:
                keys.append(f"{prefix}{key}")
                keys.extend(yaml_keys(value, f"{prefix}{key}."))
    return list(dict.fromkeys(keys))


def missing_keys(keys: list[str], text: str) -> list[str]:
    """Keys not named as code (`a.b.c`) in the schema guide."""
    return [k for k in keys if f"`{k}`" not in text]


# ---------------------------------------------------------------- the checks

def test_every_command_and_option_is_in_the_command_reference() -> None:
    surface = cli_surface()
    assert {"train", "eval", "embed", "recommend", "sweep", "init", "profile", "mi"} <= set(surface)
    assert "--allow-data-change" in surface["eval"] and "--raw" in surface["mi"]
    assert undocumented(surface, (ROOT / "docs" / "commands.md").read_text()) == []


def test_reference_checker_finds_a_missing_command_and_option() -> None:
    surface = {"": ["--quiet"], "train": ["--aug", "--lr"], "eval": ["--k"]}
    page = "`--quiet`\n## `sslkit train`\n`--aug A` and --lr bare\n## `sslkit evaluate`\n`--k`\n"
    assert undocumented(surface, page) == ["sslkit train --lr", "sslkit eval"]
    # an option is found only in its own command's section, and not as a prefix of a longer one
    assert undocumented({"train": ["--k"]}, "## `sslkit train`\n`--kx`\n## `sslkit eval`\n`--k`") == ["sslkit train --k"]


def test_relative_links_resolve() -> None:
    assert len(DOC_FILES) >= 8
    broken = [b for page in DOC_FILES for b in broken_links(page)]
    assert broken == []


def test_link_checker_finds_a_missing_file_and_heading(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## What `sslkit` guarantees: atomic writes\n")
    page = tmp_path / "page.md"
    text = ("# Top\n## Top\n[ok](other.md) [ok](other.md#what-sslkit-guarantees-atomic-writes) [ok](#top-1)\n"
            "[ok](https://example.org/x.md#nope) `[code](nowhere.md)`\n```\n[fenced](nowhere.md)\n```\n"
            "[bad](missing.md) [bad](other.md#what-sslkit-guarantees) [bad](#top-2)\n")
    page.write_text(text)
    assert broken_links(page) == ["page.md: missing.md (no such file)",
                                  "page.md: other.md#what-sslkit-guarantees (no such heading)",
                                  "page.md: #top-2 (no such heading)"]


@pytest.mark.parametrize(("heading", "anchor"), [
    ("## The protocol: train / validation / test", "the-protocol-train--validation--test"),
    ("## `sslkit train`", "sslkit-train"),
    ("## Retrieval at 1M items", "retrieval-at-1m-items"),
    ("## What [the studies](x.md) found", "what-the-studies-found"),
])
def test_github_anchor(heading: str, anchor: str) -> None:
    assert anchors(heading) == {anchor}


def test_every_reference_key_is_in_the_schema_guide() -> None:
    keys = yaml_keys(yaml.safe_load((ROOT / "schemas" / "reference.yaml").read_text()))
    assert {"interactions.where", "split.validation_fraction", "items.features.NAME.hash_buckets",
            "eval.hnsw.ef", "ssl.false_negatives", "cache_dir"} <= set(keys)
    assert "items.features.genres" not in keys
    assert missing_keys(keys, (ROOT / "docs" / "schema.md").read_text()) == []


def test_schema_checker_finds_a_missing_key() -> None:
    keys = yaml_keys(yaml.safe_load("a: 1\nb: {c: 2, features: {f1: {type: x}, f2: {type: y, max_len: 3}}}\n"))
    assert keys == ["a", "b", "b.c", "b.features", "b.features.NAME.type", "b.features.NAME.max_len"]
    assert missing_keys(keys, "`a` `b` `b.c` `b.features` `b.features.NAME.type` and b.features.NAME.max_len") \
        == ["b.features.NAME.max_len"]
