"""The shape the design promises, checked on the source: nothing outside a space's own
folder names a space or its genes, executors import only the core, no import cycles
(deferred imports included), no probing of spaces with hasattr."""

import ast
import re
from pathlib import Path

import searchkit

PACKAGE = Path(searchkit.__file__).parent
SOURCES = sorted(p for p in PACKAGE.rglob("*.py"))
# The registries hold the one line that names each component.
REGISTRY_LINES = {PACKAGE / "registry.py", PACKAGE / "bench" / "__init__.py"}


def _outside_spaces(path: Path) -> bool:
    rel = path.relative_to(PACKAGE).parts
    return not (len(rel) > 2 and rel[0] == "spaces")


def test_nothing_outside_a_space_names_a_space_or_its_genes():
    words = re.compile(r"\b(channels|tinynet|onexn|bnas|keep|kept_indices)\b")
    hits = []
    for path in SOURCES:
        if not _outside_spaces(path) or path in REGISTRY_LINES:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if words.search(line):
                hits.append(f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("searchkit")}


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_executors_import_only_the_core():
    for path in (PACKAGE / "execution").glob("*.py"):
        bad = {m for m in _imports(path) if not m.startswith("searchkit.core")}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_no_import_cycles():
    """Imports, at module level or deferred inside functions, form no cycle."""
    modules = {_module(p): p for p in SOURCES}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
                # `from pkg import module` needs the module; `from pkg import name`, the package
                deps |= subs if len(subs) == len(node.names) else subs | {node.module}
        graph[name] = {d for d in deps if d in modules and d != name}
    seen, stack = {}, []

    def visit(n):
        seen[n] = "open"
        stack.append(n)
        for d in graph[n]:
            if seen.get(d) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in seen:
                visit(d)
        stack.pop()
        seen[n] = "done"
    for n in graph:
        if n not in seen:
            visit(n)


def test_spaces_are_not_probed():
    probe = re.compile(r"(hasattr|getattr)\((self\.)?(\w+\.)?space\b\s*,")
    hits = [f"{p.relative_to(PACKAGE)}:{n}: {line.strip()}" for p in SOURCES
            for n, line in enumerate(p.read_text().splitlines(), 1) if probe.search(line)]
    assert not hits, "\n".join(hits)
