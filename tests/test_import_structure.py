"""The import structure of simsearch, read with ``ast`` (nothing is imported or run).

* A private module or package (``_name``) is imported only from inside the package that holds
  it, and a private name of a module only by modules of the same package.
* The top layer (the gRPC server and the clients) imports only public names of the public
  face: ``simsearch``, ``simsearch.index``, ``simsearch.wire``, ``simsearch.errors``, ``simsearch.validation``.
* No cycles: every import counts, function-local ones too (they only hide a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import simsearch

ROOT = Path(simsearch.__file__).resolve().parent
TOP_LAYER_PREFIXES = ("simsearch.server", "simsearch.client", "simsearch.aio_client")
PUBLIC_FACE = {"simsearch", "simsearch.index", "simsearch.wire", "simsearch.errors", "simsearch.validation"}
GENERATED = "simsearch._proto"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if not name.startswith(GENERATED):
            out[name] = path
    return out


MODULES = _modules()
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def _package_of(module: str) -> str:
    return module if module in PACKAGES else module.rsplit(".", 1)[0]


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = _package_of(module).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """(target module, imported name or None, line) of every import of simsearch code in ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "simsearch"]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if target.split(".")[0] != "simsearch":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in MODULES or sub.startswith(GENERATED):
                    out.append((sub, None, node.lineno))  # a submodule
                else:
                    out.append((target, a.name, node.lineno))
    return out


def _private_violations(module: str, target: str, name: str | None) -> list[str]:
    parts = target.split(".")
    bad = []
    for i in range(1, len(parts)):
        if parts[i].startswith("_") and not parts[i].startswith("__"):
            holder = ".".join(parts[:i])
            if not (module == holder or module.startswith(holder + ".")):
                bad.append(f"private {'.'.join(parts[: i + 1])} from outside {holder}")
    if name and name.startswith("_") and not name.startswith("__"):
        if _package_of(module) != _package_of(target) and module != target:
            bad.append(f"private name {target}.{name} from another package")
    return bad


def test_private_modules_and_names_stay_inside_their_package():
    bad = []
    for module in MODULES:
        for target, name, line in _imports(module):
            bad += [f"{module}:{line}: {why}" for why in _private_violations(module, target, name)]
    assert not bad, "\n".join(bad)


def test_server_clients_and_cli_use_only_the_public_face():
    bad = []
    for module in MODULES:
        if not module.startswith(TOP_LAYER_PREFIXES):
            continue
        for target, name, line in _imports(module):
            if target.startswith(TOP_LAYER_PREFIXES):
                continue  # the top layer's own modules (the server package; the clients share helpers)
            if target not in PUBLIC_FACE or (name and name.startswith("_") and name != "__version__"):
                bad.append(f"{module}:{line}: {target}{'.' + name if name else ''}")
    assert not bad, "the top layer reaches below the public face:\n" + "\n".join(bad)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _, _ in _imports(module):
            while target and target not in MODULES:  # a name of a module: the module
                target = target.rpartition(".")[0]
            if target and target != module:
                graph[module].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_sees_a_cycle_and_a_private_import():
    """The rules above can fail: a made-up cycle and a made-up private import are caught."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert _private_violations("simsearch.server._app", "simsearch.index._collection", "MAX_K")
    assert not _private_violations("simsearch.index._collection", "simsearch.index._types", "Document")
    assert _private_violations("simsearch.lsh", "simsearch.backends._numpy_lsh", "_pack")
