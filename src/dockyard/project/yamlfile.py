"""YAML files read with the line of every node, so each problem can point at the line to change.

PyYAML's safe loader builds the data; the same loader's node tree gives each key and list item its line,
recorded by path from the root (`("resources", "cpu")`, `("protocols", 0)`). A key's value is placed at
the key's line, which is where a reader looks for it. Duplicate keys are refused: YAML would silently
keep the last one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dockyard.project.findings import Finding, ManifestError, ManifestFileError

YamlPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """A YAML file as parsed: its data and the 1-based line of every node, by path from the root."""

    path: Path
    data: Any
    lines: Mapping[YamlPath, int]

    def line(self, *path: str | int) -> int | None:
        """The line of `path`, or of its nearest ancestor written in the file."""
        key: YamlPath = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)


def read_document(path: Path) -> Document:
    """Parse a YAML file keeping every node's line. ManifestFileError if it cannot be read; ManifestError
    (rule `yaml`) if it is not YAML; duplicate keys are an error too, since YAML silently keeps the last."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestFileError(path, [file_finding("manifest-missing", f"{path} does not exist.",
                                                     "Check the path.")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestFileError(path, [file_finding("manifest-unreadable", f"{path} cannot be read: {exc}.",
                                                     "Make it a readable UTF-8 text file.")]) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        lines: dict[YamlPath, int] = {}
        duplicates: list[Finding] = []
        if node is not None:
            _record_lines(loader, node, (), node.start_mark.line + 1, lines, duplicates)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(path, [Finding(
            rule="yaml", severity="error", message=f"This is not valid YAML: {problem}.",
            fix="Correct the YAML syntax at this line (indentation, a missing colon, an unclosed quote).",
            line=mark.line + 1 if mark is not None else None,
        )]) from None
    finally:
        loader.dispose()
    if duplicates:
        raise ManifestError(path, duplicates)
    return Document(path=path, data=data, lines=lines)


def _record_lines(
    loader: yaml.SafeLoader, node: yaml.Node, path: YamlPath, line: int,
    lines: dict[YamlPath, int], duplicates: list[Finding],
) -> None:
    lines[path] = line
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue
            key_line = key_node.start_mark.line + 1
            if key in seen:
                duplicates.append(Finding(
                    rule="duplicate-key", severity="error", message=f"{dotted(path + (key,))} is written twice; "
                    "YAML keeps only the last one.", fix="Keep one of them.", line=key_line,
                ))
            seen.add(key)
            # A key's value is "at" the key's line: that is where a reader looks for it.
            _record_lines(loader, value_node, path + (key,), key_line, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(loader, item, path + (index,), item.start_mark.line + 1, lines, duplicates)


def dotted(path: YamlPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def file_finding(rule: str, message: str, fix: str) -> Finding:
    return Finding(rule=rule, severity="error", message=message, fix=fix, line=None)
