"""The public face: every type a public function or method returns is exported by ``simsearch``."""

from __future__ import annotations

import inspect
import typing

import pytest

import simsearch

# Names whose objects are modules or functions, not types or classes with methods.
_PUBLIC = [name for name in simsearch.__all__ if name not in ("__version__",)]


def _objects():
    for name in _PUBLIC:
        obj = getattr(simsearch, name)
        if inspect.ismodule(obj):
            for sub in getattr(obj, "__all__", []):
                yield f"{name}.{sub}", getattr(obj, sub)
        else:
            yield name, obj


def _callables():
    """(qualified name, function) of every public function and public method of a public class."""
    seen = set()
    for name, obj in _objects():
        if inspect.isclass(obj):
            for meth_name, meth in inspect.getmembers(obj):
                if meth_name.startswith("_") and meth_name not in ("__init__", "__getitem__", "__iter__"):
                    continue
                fn = meth.fget if isinstance(meth, property) else meth
                if (inspect.isfunction(fn) or inspect.ismethod(fn)) and fn.__module__.startswith("simsearch"):
                    if id(fn) not in seen:
                        seen.add(id(fn))
                        yield f"{name}.{meth_name}", fn
            for prop_name, prop in vars(obj).items():
                if isinstance(prop, property) and not prop_name.startswith("_") and id(prop.fget) not in seen:
                    seen.add(id(prop.fget))
                    yield f"{name}.{prop_name}", prop.fget
        elif inspect.isfunction(obj) and id(obj) not in seen:
            seen.add(id(obj))
            yield name, obj


def _classes_in(hint) -> set[type]:
    out: set[type] = set()
    if inspect.isclass(hint):
        out.add(hint)
    for arg in typing.get_args(hint):
        out |= _classes_in(arg)
    origin = typing.get_origin(hint)
    if inspect.isclass(origin):
        out.add(origin)
    return out


def _return_hints():
    for name, fn in _callables():
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:  # an annotation that does not resolve is itself a bug
            raise AssertionError(f"{name}: its annotations do not resolve ({exc})") from None
        yield name, hints.get("return", inspect.Signature.empty)


def test_every_returned_simsearch_type_is_exported():
    exported = {id(getattr(simsearch, n)) for n in _PUBLIC}
    missing = {}
    for name, hint in _return_hints():
        for cls in _classes_in(hint):
            if cls.__module__.startswith("simsearch") and id(cls) not in exported:
                missing.setdefault(f"{cls.__module__}.{cls.__qualname__}", []).append(name)
    assert not missing, f"returned but not in simsearch.__all__: {missing}"


def test_public_functions_and_methods_annotate_their_returns():
    unannotated = [name for name, hint in _return_hints()
                   if hint is inspect.Signature.empty and not name.endswith("__init__")]
    assert not unannotated, f"public callables without a return annotation: {unannotated}"


@pytest.mark.parametrize("name", _PUBLIC)
def test_all_names_resolve(name):
    assert getattr(simsearch, name) is not None
