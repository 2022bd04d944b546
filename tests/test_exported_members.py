"""The public surface: ``__all__``, importability and docstrings (as httpx's
``tests/test_exported_members.py`` and anyio's ``tests/test_all_attributes.py``)."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import pathlib
import types
from typing import Any

import pytest

import httpx_refresh

PUBLIC = sorted(httpx_refresh.__all__)
# The names DESIGN.md fixes ("Public API (these names are fixed)").
DESIGN_NAMES = {
    "load_connector",
    "MemoryStore",
    "FileStore",
    "RedisStore",
    "RefreshAuth",
    "OAuth2Refresh",
    "ClientCredentialsRefresh",
    "bearer",
    "headers",
    "query_param",
    "HttpxRefreshError",
    "RefreshError",
    "ReauthorizationRequired",
    "RequestNotReplayable",
    "SpecError",
    "StoreError",
}


def test_all_equals_the_public_names() -> None:
    """``__all__`` lists exactly the module's public names, each once (a submodule such
    as ``httpx2`` appears as an attribute once imported; it is not a name of ``__all__``)."""
    public = {
        name
        for name, value in vars(httpx_refresh).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert len(httpx_refresh.__all__) == len(set(httpx_refresh.__all__))
    assert set(httpx_refresh.__all__) == public


def test_design_names_are_exported() -> None:
    """Every name DESIGN.md fixes as public API is exported."""
    missing = sorted(DESIGN_NAMES - set(httpx_refresh.__all__))
    assert missing == []


@pytest.mark.parametrize("name", PUBLIC)
def test_every_name_is_importable(name: str) -> None:
    """``from httpx_refresh import <name>`` works for every name in ``__all__``."""
    namespace: dict[str, Any] = {}
    exec(f"from httpx_refresh import {name}", namespace)
    assert namespace[name] is getattr(httpx_refresh, name)


def test_star_import_gives_exactly_all() -> None:
    """``from httpx_refresh import *`` binds exactly ``__all__``."""
    namespace: dict[str, Any] = {}
    exec("from httpx_refresh import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(httpx_refresh.__all__)


def _public_members(obj: Any) -> list[tuple[str, Any]]:
    """Public methods and properties defined by our own classes (not inherited from httpx,
    ``Exception`` or ``object``)."""
    members = []
    for klass in inspect.getmro(obj):
        if not klass.__module__.startswith("httpx_refresh"):
            continue
        for attr, value in vars(klass).items():
            if attr.startswith("_") and attr not in {"__call__", "__init__"}:
                continue
            if isinstance(value, (property, staticmethod, classmethod)) or inspect.isfunction(
                value
            ):
                members.append((f"{obj.__name__}.{attr}", value))
    return members


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_callable_has_a_docstring(name: str) -> None:
    """STYLE 7: every public callable and class has a docstring, and so do the public methods
    and properties of the public classes."""
    obj = getattr(httpx_refresh, name)
    assert callable(obj), name
    assert inspect.getdoc(obj), f"{name} has no docstring"
    if inspect.isclass(obj):
        undocumented = []
        for member_name, member in _public_members(obj):
            if member_name.endswith("__init__"):
                continue  # documented in the class docstring (Args:)
            function = member.fget if isinstance(member, property) else member
            if isinstance(function, (staticmethod, classmethod)):
                function = function.__func__
            if not (function.__doc__ or "").strip():
                undocumented.append(member_name)
        assert undocumented == []


def test_version_matches_the_distribution() -> None:
    """``__version__`` is the installed distribution's version."""
    assert httpx_refresh.__version__ == importlib.metadata.version("httpx-refresh")


def test_py_typed_is_shipped() -> None:
    """STYLE 1 / PEP 561: the package ships ``py.typed``."""
    package_dir = pathlib.Path(httpx_refresh.__file__).parent
    assert (package_dir / "py.typed").is_file()


def test_modules_are_private() -> None:
    """STYLE 1: every module inside the package is private (``_name``), except
    ``httpx2``, the entry point issue 9 names (``from httpx_refresh.httpx2 import
    RefreshAuth``), which only re-exports (see the next test)."""
    package_dir = pathlib.Path(httpx_refresh.__file__).parent
    public_modules = sorted(
        path.name
        for path in package_dir.iterdir()
        if not path.name.startswith("_")
        and (path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists()))
    )
    assert public_modules == ["httpx2.py"]


def test_httpx2_module_only_re_exports() -> None:
    """``httpx_refresh.httpx2`` defines nothing itself: its ``__all__`` names objects of
    private modules, each with a docstring."""
    if os.environ.get("HTTPX_REFRESH_REQUIRE_HTTPX2") != "1":  # CI requires it
        pytest.importorskip("httpx2")
    module = importlib.import_module("httpx_refresh.httpx2")
    public = {name for name in vars(module) if not name.startswith("_")} - {"annotations"}
    assert set(module.__all__) == public == {"RefreshAuth"}
    for name in module.__all__:
        obj = getattr(module, name)
        assert obj.__module__.startswith("httpx_refresh._"), name
        assert obj.__doc__


def test_exported_objects_live_in_private_modules() -> None:
    """STYLE 1: ``__init__`` only re-exports; each public object is defined in ``_module``."""
    for name in PUBLIC:
        module = getattr(getattr(httpx_refresh, name), "__module__", "")
        assert module.startswith("httpx_refresh._"), name
        importlib.import_module(module)
