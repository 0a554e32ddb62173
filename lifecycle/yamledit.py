"""Add or remove one entry of a top-level section of a YAML file (``params.yaml``,
``dvc.lock``) by editing its lines, so that every other byte of the file stays as it was.

A round-trip YAML library re-emits the whole document: ruamel.yaml 0.19 (the one DVC
installs) turns ``start: null`` into ``start:``, re-indents block sequences and moves a
comment that precedes a section into the previous entry. Here the parser is only asked
*where* things are (PyYAML's composed nodes carry exact line/column marks), the lines of
the one entry are inserted or cut, and the result is parsed again and compared with the
intended data: an edit that would change anything else is refused and nothing is written.

What belongs to an entry: its key line, every line up to its last value line, and comment
lines right after it that are indented deeper than its key. Comments above the key, and
comments indented at the key's level or less after it, belong to what surrounds it and
are kept.
"""
from __future__ import annotations

import copy

import yaml

from contract.errors import UserError


# libyaml's parser when PyYAML was built with it (its wheels are): the same documents and
# marks, ~10x faster on dvc.lock, which a publish parses a dozen times.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str):
    """``yaml.safe_load``, through libyaml where available."""
    return yaml.load(text, Loader=_LOADER)


class YamlEditError(UserError):
    """The file cannot be edited in place; the message says how to do it by hand."""


def _mapping_item(node: yaml.Node, key: str):
    for key_node, value_node in node.value:
        if key_node.value == key:
            return key_node, value_node
    return None


def _last_line(node: yaml.Node) -> int:
    """The last line that holds text of ``node`` (marks are 0-based; an end mark at
    column 0 means the text ended on the line before)."""
    if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
        return max(max(_last_line(k), _last_line(v)) for k, v in node.value)
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        return max(_last_line(v) for v in node.value)
    end = node.end_mark
    return end.line - 1 if end.column == 0 and end.line > node.start_mark.line else end.line


def _is_blank(line: str) -> bool:
    return not line.strip()


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _entry_span(lines: list[str], key_node: yaml.Node, value_node: yaml.Node) -> tuple[int, int]:
    """[first, stop) line indices of an entry, as the module docstring defines it."""
    first, column = key_node.start_mark.line, key_node.start_mark.column
    last = max(first, _last_line(value_node))
    while last > first and _is_blank(lines[last]):
        last -= 1
    stop = last + 1
    while stop < len(lines) and _is_comment(lines[stop]) and _indent(lines[stop]) > column:
        stop += 1
    return first, stop


def _compose(text: str, where: str) -> yaml.MappingNode:
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as error:
        raise YamlEditError(f"{where} is not valid YAML ({error}); fix it first") from None
    if root is None:
        return yaml.MappingNode("tag:yaml.org,2002:map", [])
    if not isinstance(root, yaml.MappingNode):
        raise YamlEditError(f"{where} must hold a mapping at the top level")
    return root


class _Dumper(yaml.SafeDumper):
    """Indents a block sequence under its key (``models: {v401: [...]}`` as ``  - ...``),
    the layout people write by hand."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _render(key: str, entry, column: int) -> list[str]:
    """``key: entry`` as block YAML down to the entry's keys; deeper collections of
    scalars stay inline (``parent_variants_f05: [v501, v502]``), as params.yaml writes them."""
    node = yaml.representer.SafeRepresenter(default_flow_style=None, sort_keys=False).represent_data({key: entry})
    node.flow_style = False
    for _, value in node.value:
        if isinstance(value, yaml.CollectionNode):
            value.flow_style = False
    text = yaml.serialize(node, Dumper=_Dumper, allow_unicode=True, width=100)
    return [" " * column + line + "\n" for line in text.splitlines()]


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def _checked(new_lines: list[str], expected: dict, where: str, fix: str) -> str:
    text = "".join(new_lines)
    try:
        ok = (load_yaml(text) or {}) == expected
    except yaml.YAMLError:
        ok = False
    if not ok:
        raise YamlEditError(f"{where} cannot be edited in place without changing other content (an unusual "
                            f"layout such as anchors or a section in flow style); nothing was written. {fix}")
    return text


def _append(text: str, section: str, entry_lines, where: str, fix: str) -> list[str]:
    """``text``'s lines with ``entry_lines(column)`` (the entry's lines at the column of the
    section's entries) after the section's last entry; an absent section is created."""
    root = _compose(text, where)
    lines = _lines(text)
    found = _mapping_item(root, section)
    if found is None:
        return lines + (["\n"] if lines and not _is_blank(lines[-1]) else []) + [f"{section}:\n"] + entry_lines(2)
    key_node, value_node = found
    if isinstance(value_node, yaml.MappingNode) and value_node.value and not value_node.flow_style:
        last_key, last_value = value_node.value[-1]
        _, stop = _entry_span(lines, last_key, last_value)
        return lines[:stop] + entry_lines(last_key.start_mark.column) + lines[stop:]
    # An empty section (`deployrun:`, `deployrun: null`, `deployrun: {}`): drop the empty
    # value from the key's line and put the entry under it.
    empty = not value_node.value if isinstance(value_node, yaml.MappingNode) else \
        (load_yaml(text) or {}).get(section) is None
    start, end = value_node.start_mark, value_node.end_mark
    if not empty or not start.line == end.line == key_node.start_mark.line:
        raise YamlEditError(f"{where}: section '{section}' is not a block mapping, so entries cannot be added "
                            f"to it in place; nothing was written. {fix}")
    line = lines[start.line]
    lines[start.line] = (line[:start.column] + line[end.column:]).rstrip() + "\n"
    return lines[:start.line + 1] + entry_lines(key_node.start_mark.column + 2) + lines[start.line + 1:]


def add_entry(text: str, section: str, key: str, entry, where: str) -> str:
    """``text`` with ``section.key: entry`` appended as the section's last entry."""
    expected = copy.deepcopy(load_yaml(text) or {})
    expected[section] = {**(expected.get(section) or {}), key: entry}
    fix = "Add it by hand under '" + section + ":':\n" + "".join(_render(key, entry, 2))
    new = _append(text, section, lambda column: _render(key, entry, column), where, fix)
    return _checked(new, expected, where, fix)


def copy_entries(base: str, source: str, section: str, keys, where: str) -> str:
    """``base`` with each ``section.<key>`` of ``keys`` exactly as ``source`` has it, line
    for line: replaced in place where ``base`` has it, appended where it has not, removed
    where ``source`` lacks it; every other byte of ``base`` stays. Publishing one variant
    commits its entries this way, never another's."""
    source_data = load_yaml(source) or {}
    found = _mapping_item(_compose(source, where), section)
    source_section = found[1] if found and isinstance(found[1], yaml.MappingNode) else None
    source_lines = _lines(source)
    found_items = {key: _mapping_item(source_section, key) if source_section else None for key in keys}
    chunks = {}  # in the order ``source`` has them, so that appended entries keep it
    for key, item in sorted(((k, i) for k, i in found_items.items() if i), key=lambda ki: ki[1][0].start_mark.line):
        first, stop = _entry_span(source_lines, *item)
        chunks[key] = (item[0].start_mark.column, source_lines[first:stop])

    def indented(parts, column: int) -> list[str]:
        return [(" " * column + line[at:]) if line.strip() else line for at, lines in parts for line in lines]

    text = remove_entries(base, section, [k for k in keys if k not in chunks], where)
    expected = copy.deepcopy(load_yaml(text) or {})
    for key in chunks:
        expected[section] = {**(expected.get(section) or {}), key: source_data[section][key]}
    fix = f"Copy {', '.join(f'{section}.{k}' for k in keys)} by hand."
    found = _mapping_item(_compose(text, where), section) if text.strip() else None
    base_section = found[1] if found and isinstance(found[1], yaml.MappingNode) else None
    present = {k: _mapping_item(base_section, k) for k in chunks if base_section and _mapping_item(base_section, k)}
    lines = _lines(text)
    for key, (key_node, value_node) in sorted(present.items(), key=lambda kv: -kv[1][0].start_mark.line):
        first, stop = _entry_span(lines, key_node, value_node)
        lines[first:stop] = indented([chunks[key]], key_node.start_mark.column)
    text = "".join(lines)
    added = [chunks[k] for k in chunks if k not in present]
    if added:
        lines = _append(text, section, lambda column: indented(added, column), where, fix)
    return _checked(lines, expected, where, fix)


def remove_entries(text: str, section: str, keys, where: str) -> str:
    """``text`` without the entries ``section.<key>`` for each of ``keys`` present; a
    section left empty becomes ``section: {}`` (it stays a mapping for DVC's foreach)."""
    root = _compose(text, where)
    data = load_yaml(text) or {}
    found = _mapping_item(root, section)
    present = [k for k in keys if found and isinstance(found[1], yaml.MappingNode) and _mapping_item(found[1], k)]
    if not present:
        return text
    expected = copy.deepcopy(data)
    for key in present:
        del expected[section][key]
    fix = f"Remove {', '.join(f'{section}.{k}' for k in present)} by hand."
    key_node, value_node = found
    lines = _lines(text)
    spans = sorted(_entry_span(lines, *_mapping_item(value_node, k)) for k in present)
    for first, stop in reversed(spans):
        del lines[first:stop]
    if not expected[section]:
        row = key_node.start_mark.line
        colon = lines[row].index(":", key_node.end_mark.column)
        lines[row] = lines[row][:colon + 1] + " {}" + lines[row][colon + 1:]
    return _checked(lines, expected, where, fix)
