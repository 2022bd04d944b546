"""``Connector`` and ``Connection``: a loaded spec, and the spec bound to one account."""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import threading
import time
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, Final, Literal

import anyio
import anyio.to_thread
import httpx

from .. import _lib
from .._auth import RefreshAuth, auth_class
from .._exceptions import ReauthorizationRequired, SpecError, StoreError
from .._invoke import call_async, call_sync
from .._oauth2 import OAuth2Refresh
from .._redact import redact_query_names
from .._retry import RetryPolicy
from .._stores import CredentialStore, is_store
from ._client import ApiClientSpec, Settings, response_variables
from ._formulas import UNDEFINED, Compiled
from ._loader import SUPPORTED_TYPES, AuthVariant, ConnectorSpec, load_spec
from ._methods import METHODS, Method
from ._node import DEFAULT_TIMEOUT, JavaScriptError, NodeRuntime, encode_request_body
from ._ratelimit import AsyncRateLimitTransport, RateLimitTransport, default_policy
from ._rest import RestTest

__all__ = ["Connection", "Connector", "load_connector"]

_TRANSPORT_OPTIONS = ("verify", "cert", "http1", "http2", "limits", "trust_env")
# RefreshAuth's keyword options that connect() passes through (the spec sets the rest).
_AUTH_OPTIONS = frozenset(inspect.signature(RefreshAuth).parameters) - {
    "credentials",
    "refresh",
    "connector_parameters",
    "connection_parameters",
    "apply",
    "refresh_on",
}
# makeApiClient fields a javascript makeApiClient may return that only matter to
# Integration.app's own client: accepted, not used.
_JS_CLIENT_EXTRA: Final = frozenset({"returnFullResponse", "responseType"})
# How long a failed javascript makeApiClient is remembered for one credentials version.
_JS_RETRY_AFTER: Final = 5.0
_HTTP_METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def load_connector(
    path: str | os.PathLike[str],
    *,
    node: str | os.PathLike[str] | None = None,
    node_timeout: float = DEFAULT_TIMEOUT,
) -> Connector:
    """Load an Integration.app-style connector spec (``spec.yml``) and its method files.

    Both layouts load: methods as ``{implementationType, filePath}`` stubs with bodies in
    ``auth/<kebab-method>.<ext>``, and inline ``type: mapping`` + ``mapping:`` bodies.
    YAML is read with ``yaml.SafeLoader``; formulas are compiled and checked now, and
    ``python`` method files are imported now (that runs the connector's own module code).
    ``javascript`` methods (a file, or inline ``code:``) run under Node.js when they are
    called, one ``node`` process per call (see the README, "JavaScript connectors").

    Args:
        path: the ``spec.yml`` file, or the connector directory that holds it.
        node: the Node.js executable for ``javascript`` methods (a path, or a name looked
            up on ``PATH``); default: the ``HTTPX_REFRESH_NODE`` environment variable,
            else ``node``. Only looked up when a javascript method first runs.
        node_timeout: seconds one javascript call may take, Node start included, before
            the process is killed (default 20).

    Returns:
        The :class:`Connector`.

    Raises:
        SpecError: the spec or one of its method files is invalid; the message names the
            file, the line and the key path.
        ValueError: ``node_timeout`` is not positive.
    """
    return Connector(load_spec(path), runtime=NodeRuntime(node, node_timeout))


class Connector:
    """A loaded connector spec; :meth:`connect` binds it to one account.

    Built by :func:`load_connector`. Read-only.

    Attributes:
        name: the spec's ``name`` (else ``key``, else the directory name).
        key: the spec's ``key``, if any.
        path: the ``spec.yml`` path.
        auth_type: the top-level auth type, or ``None`` when only ``auth.options`` set types.
        options: the keys of ``auth.options`` (possibly empty).
    """

    def __init__(self, spec: ConnectorSpec, *, runtime: NodeRuntime | None = None) -> None:
        self._spec = spec
        self.runtime = runtime if runtime is not None else NodeRuntime()
        self._root = spec.path.parent.resolve()  # where javascript methods run
        self.name = spec.name
        self.key = spec.key
        self.path = spec.path
        self.auth_type = spec.top.type if spec.top is not None else None
        self.options = tuple(spec.options)
        self._clients: dict[int, ApiClientSpec] = {}
        self._tests: dict[int, RestTest] = {}
        for variant in self._variants():
            client = variant.methods["makeApiClient"]
            if id(client) not in self._clients:
                self._clients[id(client)] = ApiClientSpec(client)
            test = variant.methods.get("test")
            if test is not None and test.kind == "rest-api-mapping" and id(test) not in self._tests:
                self._tests[id(test)] = RestTest(test)

    def __repr__(self) -> str:
        return f"<Connector {self.name!r} auth={self.auth_type!r} options={list(self.options)}>"

    def _variants(self) -> list[AuthVariant]:
        top = [self._spec.top] if self._spec.top is not None else []
        return top + list(self._spec.options.values())

    def describe(self) -> dict[str, Any]:
        """A summary for people and tools (what ``httpx-refresh check`` prints).

        Returns:
            ``{"name", "key", "file", "variants": [{"option", "type", "title", "methods":
            {name: "kind (file)"}}]}``; no parameter or credential values.
        """
        return {
            "name": self.name,
            "key": self.key,
            "file": str(self.path),
            "variants": [
                {
                    "option": variant.key,
                    "type": variant.type,
                    "title": variant.title,
                    "supported": variant.type in SUPPORTED_TYPES,
                    "methods": {
                        name: f"{method.kind} ({method.file})"
                        for name, method in variant.methods.items()
                    },
                }
                for variant in self._variants()
            ],
        }

    def _check_javascript(self) -> list[SpecError]:
        """Load every javascript method under Node.js without calling it (``check``).

        Returns:
            The problems (a missing Node.js, package, or default export, a syntax error,
            top-level code that throws), one per method; empty when all load.
        """
        problems: list[SpecError] = []
        seen: set[int] = set()
        for variant in self._variants():
            for method in variant.methods.values():
                if method.kind != "javascript" or id(method) in seen:
                    continue
                seen.add(id(method))
                try:
                    call_sync(
                        self.runtime.call,
                        name=method.name,
                        where=method.file,
                        root=self._root,
                        args={},
                        file=method.script,
                        code=method.code,
                        code_line=method.line if method.code is not None else None,
                        check=True,
                    )
                except SpecError as exc:
                    problems.append(exc)
        return problems

    def _enabled(self, variant: AuthVariant, scope: Mapping[str, Any]) -> bool:
        if variant.enabled is None or isinstance(variant.enabled, bool):
            return variant.enabled is not False
        return bool(variant.enabled.evaluate(scope))

    def _choose(self, auth_option: str | None, scope: Mapping[str, Any]) -> AuthVariant:
        if auth_option is not None:
            variant = self._spec.options.get(auth_option)
            if variant is None:
                known = ", ".join(self.options) or "none"
                raise ValueError(f"unknown auth option {auth_option!r} (the spec has: {known})")
            if not self._enabled(variant, scope):
                raise ValueError(
                    f"auth option {auth_option!r} is not enabled for these connector "
                    "parameters (its enabled formula is false)"
                )
            return variant
        if self._spec.top is not None:
            return self._spec.top
        for variant in self._spec.options.values():
            if self._enabled(variant, scope):
                return variant
        raise ValueError("no auth option is enabled for these connector parameters")

    def connect(
        self,
        *,
        connector_parameters: Mapping[str, Any] | None = None,
        connection_parameters: Mapping[str, Any] | None = None,
        credentials: Mapping[str, Any] | CredentialStore | None = None,
        auth_option: str | None = None,
        rate_limit_retry: RetryPolicy | None = None,
        **auth_options: Any,
    ) -> Connection:
        """Bind the connector to one account and build its :class:`RefreshAuth`.

        Args:
            connector_parameters: app-level settings (``connectorParameters``: client id
                and secret, ...).
            connection_parameters: what the user entered (``connectionParameters``, also
                visible to formulas as ``connectionInput``).
            credentials: the connection's credentials, or a :class:`CredentialStore` that
                holds them (shared with other processes). For ``oauth2`` they are required
                (the token response of the authorization). For ``client-credentials`` they
                default to ``getCredentialsFromConnectionParameters`` (called now; it may
                make requests) or to the connection parameters themselves.
            auth_option: a key of ``auth.options``; its ``enabled`` formula must be true.
                ``None``: the top-level auth, else the first enabled option.
            rate_limit_retry: how API requests answered 429 (or matched by a
                ``rate_limit_exceeded`` response handler) are sent again; default 4 attempts
                within 60 s, waits up to 30 s, ``Retry-After`` honoured.
                ``RetryPolicy(attempts=1)`` turns it off.
            **auth_options: passed to :class:`RefreshAuth` (``leeway``, ``on_refresh``,
                ``retry``, ``advisory``, ``origins``, ``token_key``, ``clock``, ...).

        Returns:
            The :class:`Connection`.

        Raises:
            ValueError: an unknown or disabled ``auth_option``, a missing required
                parameter (per the spec's schemas), or no credentials for ``oauth2``.
            SpecError: the chosen auth type is not supported here (oauth1, proxy, ...),
                a method evaluated to the wrong type, or a ``javascript`` method could not
                run (Node.js missing, the module failing to load, a thrown error).
            RefreshError: ``getCredentialsFromConnectionParameters`` failed.
        """
        unknown = sorted(set(auth_options) - _AUTH_OPTIONS)
        if unknown:
            raise TypeError(
                f"connect() got an unexpected keyword argument {unknown[0]!r} (it takes "
                "connector_parameters, connection_parameters, credentials, auth_option, "
                "rate_limit_retry and RefreshAuth's options)"
            )
        connector_parameters = dict(connector_parameters or {})
        connection_parameters = dict(connection_parameters or {})
        scope = {
            "connectorParameters": connector_parameters,
            "connectionParameters": connection_parameters,
            "connectionInput": connection_parameters,
        }
        variant = self._choose(auth_option, scope)
        if variant.type not in SUPPORTED_TYPES:
            raise variant.error(
                f"auth type {variant.type!r} is not supported by httpx-refresh "
                f"(supported: {', '.join(SUPPORTED_TYPES)})"
            )
        _require(self._spec.parameters_schema, connector_parameters, "connector parameter")
        store: CredentialStore | None = None
        if is_store(credentials):
            store = credentials  # type: ignore[assignment]
            loaded = store.load()  # type: ignore[union-attr]
            credentials = None if loaded is None else loaded.credentials
        if credentials is None:
            if variant.type == "oauth2":
                raise ValueError(
                    "an oauth2 connection needs credentials: the token response of the "
                    "user's authorization (access_token, refresh_token, ...)"
                )
            _require(variant.input_schema, connection_parameters, "connection parameter")
        elif not isinstance(credentials, Mapping):
            raise TypeError(f"credentials must be a mapping, got {type(credentials).__name__}")
        return Connection(
            self,
            variant,
            self._clients.get(id(variant.methods["makeApiClient"])),
            connector_parameters=connector_parameters,
            connection_parameters=connection_parameters,
            credentials=credentials,
            store=store,
            rate_limit_retry=rate_limit_retry if rate_limit_retry is not None else default_policy(),
            auth_options=auth_options,
        )


def _require(schema: Mapping[str, Any] | None, given: Mapping[str, Any], what: str) -> None:
    required = schema.get("required") if schema else None
    if not isinstance(required, list):
        return
    missing = [name for name in required if isinstance(name, str) and given.get(name) in (None, "")]
    if missing:
        raise ValueError(f"missing required {what}: {', '.join(missing)}")


class _StaticAuthBase:
    """Puts one evaluated ``makeApiClient`` onto requests to its origin (no refresh)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def auth_flow(self, request: Any) -> Any:
        _write(self._settings, request)
        yield request


_STATIC_AUTH: dict[str, type[Any]] = {}


def _static_auth(lib: ModuleType, settings: Settings) -> Any:
    """A ``_StaticAuth`` that ``lib``'s clients accept (its ``Auth`` as the base)."""
    name = _lib.name_of(lib)
    cls = _STATIC_AUTH.get(name)
    if cls is None:
        cls = _STATIC_AUTH[name] = type("_StaticAuth", (_StaticAuthBase, lib.Auth), {})
    return cls(settings)


def _write(settings: Settings, request: httpx.Request, *, anywhere: bool = False) -> bool:
    """Write ``settings`` onto ``request``; ``False`` if it goes elsewhere (nothing written).

    ``anywhere``: the caller has decided the scope (``connect(origins=...)``).
    """
    key = settings.origin_key
    if key is not None and not anywhere:
        url = request.url
        if (url.scheme, url.host, url.port) != key:
            return False  # credentials only go to the origin of baseUri (DESIGN R13)
    if settings.problem is not None:
        raise settings.problem
    for name, value in settings.headers:
        request.headers[name] = value
    if settings.params:
        request.url = request.url.copy_merge_params(dict(settings.params))
    return True


class _Apply:
    """The connection's applier: ``makeApiClient`` evaluated once per credentials snapshot.

    A javascript ``makeApiClient`` runs under Node.js: once per credentials version (the
    result is also remembered by content, so the copy a refresh hands to
    :class:`_PrepareThenHook` serves the snapshot the requests use), under a lock so that
    whoever comes first for a new version (the refresh, a thread, a request that saw
    the new credentials before the refresh got there) starts the one process and the
    others wait for its result; a failure is remembered for that version for a few
    seconds instead of starting a process per request.
    """

    __slots__ = ("_cache", "_client", "_javascript", "_known", "_lock", "_scope", "anywhere")

    def __init__(
        self,
        client: ApiClientSpec,
        scope: Mapping[str, Any],
        *,
        javascript: Callable[[Mapping[str, Any]], Settings] | None = None,
    ) -> None:
        self._client = client
        self._scope = scope
        self._javascript = javascript  # credentials -> Settings (runs Node.js)
        self.anywhere = False  # True when connect(origins=...) decides the scope
        self._cache: tuple[Mapping[str, Any], Settings] | None = None
        self._known: tuple[dict[str, Any], Settings | SpecError, float] | None = None
        self._lock = threading.Lock()

    def settings(self, credentials: Mapping[str, Any]) -> Settings:
        cache = self._cache
        if cache is None or cache[0] is not credentials:
            if self._javascript is not None:
                return self._js_settings(credentials)
            settings = self._client.settings({**self._scope, "credentials": credentials})
            if settings.params:
                redact_query_names(name for name, _ in settings.params)
            cache = (credentials, settings)
            self._cache = cache
        return cache[1]

    def _recall(self, credentials: Mapping[str, Any]) -> Settings | SpecError | None:
        known = self._known
        if known is None or known[0] != credentials:
            return None
        if isinstance(known[1], SpecError) and time.monotonic() - known[2] > _JS_RETRY_AFTER:
            return None
        return known[1]

    def _remember(self, credentials: Mapping[str, Any], result: Settings | SpecError) -> None:
        if isinstance(result, Settings) and result.params:
            redact_query_names(name for name, _ in result.params)
        self._known = (dict(credentials), result, time.monotonic())

    def _js_settings(self, credentials: Mapping[str, Any]) -> Settings:
        assert self._javascript is not None
        result = self._recall(credentials)
        if result is None:
            with self._lock:
                result = self._recall(credentials)  # another thread may have just run it
                if result is None:
                    try:
                        result = self._javascript(credentials)
                    except SpecError as exc:
                        result = exc
                    self._remember(credentials, result)
        if isinstance(result, SpecError):
            raise copy.copy(result)  # a fresh traceback each time
        self._cache = (credentials, result)
        return result

    def __call__(self, request: httpx.Request, credentials: Mapping[str, Any]) -> None:
        _write(self.settings(credentials), request, anywhere=self.anywhere)

    def apply_reporting(
        self, request: httpx.Request, credentials: Mapping[str, Any]
    ) -> tuple[frozenset[str], frozenset[str], tuple[str, ...]]:
        """Apply, and say what was written (for the redirect guard, without diffing)."""
        settings = self.settings(credentials)
        if not _write(settings, request, anywhere=self.anywhere):
            return frozenset(), frozenset(), ()
        return settings.written

    def __repr__(self) -> str:
        return "<makeApiClient applier>"


class _JavaScriptApply(_Apply):
    """The applier of a connection whose makeApiClient is javascript (see :class:`_Apply`).

    It has ``aprepare``, which RefreshAuth awaits before applying credentials from an
    async flow (a plain ``_Apply`` has none, so it costs mapping connectors nothing).
    """

    __slots__ = ()

    def prepare(self, credentials: Mapping[str, Any]) -> None:
        """Run a javascript makeApiClient for new credentials now (sync flights)."""
        with contextlib.suppress(SpecError):  # remembered: the requests raise it
            self._js_settings(credentials)

    async def aprepare(self, credentials: Mapping[str, Any]) -> None:
        """Have the settings for ``credentials`` ready, without blocking the event loop.

        RefreshAuth awaits this before it applies credentials from an async flow, and
        :class:`_PrepareThenHook` inside async refreshes. A javascript makeApiClient that
        has not run for these credentials runs in a worker thread, under the lock that
        makes it run once per version (waiting for another run happens there too).
        """
        cache = self._cache
        if (cache is None or cache[0] is not credentials) and self._recall(credentials) is None:
            await anyio.to_thread.run_sync(self.prepare, credentials)


class _PrepareThenHook:
    """``on_refresh`` of a connection with a javascript makeApiClient.

    Runs makeApiClient for the merged credentials inside the flight (before its waiting
    requests are released), then the user's own ``on_refresh``, if any, as RefreshAuth
    would have called it: sync from sync flights, awaited or in a worker thread from
    async ones.
    """

    def __init__(self, apply: _JavaScriptApply, hook: Any) -> None:
        self._apply = apply
        self._hook = hook

    def __call__(self, credentials: dict[str, Any]) -> Any:
        self._apply.prepare(credentials)
        if self._hook is not None:
            return call_sync(self._hook, credentials)
        return None

    async def acall(self, credentials: dict[str, Any]) -> Any:
        await self._apply.aprepare(credentials)
        if self._hook is not None:
            return await call_async(self._hook, credentials)
        return None

    def __repr__(self) -> str:
        return f"<javascript makeApiClient, then on_refresh={self._hook!r}>"


class Connection:
    """A connector bound to one account: its :class:`RefreshAuth` and ready-made clients.

    Built by :meth:`Connector.connect`. It does not pickle or deep-copy, nor does its
    ``auth`` (a ``TypeError`` says so): connect again in the other process, with a shared
    :class:`~httpx_refresh.FileStore` or :class:`~httpx_refresh.RedisStore`.

    Attributes:
        connector: the :class:`Connector`.
        auth: the :class:`RefreshAuth` (usable with any httpx client).
        auth_type: the auth type in use (``oauth2`` or ``client-credentials``).
        auth_option: the ``auth.options`` key in use, or ``None``.
    """

    def __init__(
        self,
        connector: Connector,
        variant: AuthVariant,
        client_spec: ApiClientSpec | None,
        *,
        connector_parameters: dict[str, Any],
        connection_parameters: dict[str, Any],
        credentials: Mapping[str, Any] | None,
        rate_limit_retry: RetryPolicy,
        auth_options: dict[str, Any],
        store: CredentialStore | None = None,
    ) -> None:
        self.connector = connector
        self.auth_type = variant.type
        self.auth_option = variant.key
        self._variant = variant
        self._methods = variant.methods
        self._connector_parameters = connector_parameters
        self._connection_parameters = connection_parameters
        self._scope = {
            "connectorParameters": connector_parameters,
            "connectionParameters": connection_parameters,
            "connectionInput": connection_parameters,
        }
        self._rate_limit = rate_limit_retry
        self._runtime = connector.runtime
        assert client_spec is not None
        self._client_spec = client_spec
        if client_spec.javascript:
            self._apply: _Apply = _JavaScriptApply(
                client_spec, self._scope, javascript=self._js_client_sync
            )
        else:
            self._apply = _Apply(client_spec, self._scope)
        if credentials is None:
            credentials = self._initial_credentials()
            if store is not None:  # first connection of this account: store what it starts with
                try:
                    store.save(credentials, expected_version=None)
                except StoreError:  # another process stored first: theirs wins
                    loaded = store.load()
                    if loaded is not None:
                        credentials = loaded.credentials
        refresher, can_refresh = self._refresher()
        options = dict(auth_options)
        if "token_key" not in options:
            paths = client_spec.paths
            uses_token = (
                ("credentials", "access_token") in paths
                if paths is not None
                else variant.type == "oauth2"
            )
            options["token_key"] = "access_token" if can_refresh and uses_token else None
        # Evaluate makeApiClient once now: a spec problem shows at connect(), not later.
        self._apply.settings(dict(credentials))
        if "origins" in options:
            self._apply.anywhere = True  # the caller's origins, for scope and applier alike
        else:
            # Decided per request from the current credentials' baseUri (it may move, e.g.
            # an instance_url that a refresh changes).
            options["origins"] = self._in_scope
        if client_spec.javascript:
            # A new credentials version gets its javascript makeApiClient settings inside
            # the refresh, before the waiting requests go out (never in a request).
            assert isinstance(self._apply, _JavaScriptApply)
            options["on_refresh"] = _PrepareThenHook(self._apply, options.get("on_refresh"))
        self._expired = client_spec.has_handlers("access_token_expired")
        self._defunct = client_spec.has_handlers("connection_is_defunct")
        self._limited = client_spec.has_handlers("rate_limit_exceeded")
        self.auth = RefreshAuth(
            store if store is not None else credentials,
            refresher,
            connector_parameters=connector_parameters,
            connection_parameters=connection_parameters,
            apply=self._apply,
            refresh_on=self._refresh_on if self._expired else (401,),
            **options,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Its refresher, applier and scope are the loaded spec's methods (Python modules
        # loaded from the connector's folder, a Node.js runner): not rebuilt elsewhere.
        raise TypeError(
            f"Connection {self.connector.name!r} cannot be pickled or deep-copied (nor its auth): "
            "call load_connector(...).connect(...) again in the other process, with a shared "
            "FileStore or RedisStore to share the credentials"
        )

    def __repr__(self) -> str:
        return (
            f"<Connection {self.connector.name!r} type={self.auth_type!r} "
            f"option={self.auth_option!r} version={self.auth.version}>"
        )

    # -- public -------------------------------------------------------------------------

    @property
    def credentials(self) -> Mapping[str, Any]:
        """A read-only snapshot of the current credentials (``auth.credentials``)."""
        return self.auth.credentials

    @property
    def base_url(self) -> str | None:
        """``baseUri`` evaluated with the current credentials, or ``None``."""
        return self._apply.settings(self.auth.credentials).base_uri

    def client(self, library: str | None = None, **httpx_kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` (or ``httpx2.Client``) for this connection.

        Its ``base_url`` is ``baseUri``; ``auth`` is :attr:`auth` (headers, query and basic
        auth from ``makeApiClient``, re-evaluated for each credentials version, sent only to
        the origin of ``baseUri``); the redirect guard strips them from cross-origin
        redirects (R13); responses matched by ``connection_is_defunct`` raise
        :class:`ReauthorizationRequired`; 429 and ``rate_limit_exceeded`` responses are
        retried (``rate_limit_retry``).

        Args:
            library: ``"httpx"`` or ``"httpx2"``: which library's client to build; default
                the library of :attr:`auth`. Clients of both libraries share one
                RefreshAuth state (one refresh per version between them).
            **httpx_kwargs: passed to ``httpx.Client`` (``timeout``, ``base_url`` to
                override, ``event_hooks`` added after ours, ``transport`` wrapped, ...).

        Returns:
            A new client; close it (``with connection.client() as client: ...``).

        Raises:
            TypeError: ``auth`` was passed.
            ValueError: ``library`` is not ``"httpx"`` or ``"httpx2"``.
            ImportError: that library is not installed.
            SpecError: ``baseUri`` evaluated to something that is not a URL.
        """
        lib = self._library(library)
        return lib.Client(**self._client_kwargs(httpx_kwargs, is_async=False, lib=lib))  # type: ignore[no-any-return]

    def async_client(self, library: str | None = None, **httpx_kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` (or ``httpx2.AsyncClient``) for this connection; see
        :meth:`client`.

        Returns:
            A new client; close it (``async with connection.async_client() as client``).

        Raises:
            TypeError: ``auth`` was passed.
            ValueError: ``library`` is not ``"httpx"`` or ``"httpx2"``.
            ImportError: that library is not installed.
            SpecError: ``baseUri`` evaluated to something that is not a URL.
        """
        lib = self._library(library)
        return lib.AsyncClient(**self._client_kwargs(httpx_kwargs, is_async=True, lib=lib))  # type: ignore[no-any-return]

    def auth_for(self, library: str) -> Any:
        """:attr:`auth` as the ``Auth`` of ``library`` (``"httpx"`` or ``"httpx2"``).

        Returns:
            :attr:`auth` itself, or its view for the other library (``sharing``): the same
            credentials, single flight, stats and store.

        Raises:
            ValueError: ``library`` is not ``"httpx"`` or ``"httpx2"``.
            ImportError: that library is not installed.
        """
        return self._auth_for(self._library(library))

    def test(self) -> bool:
        """Run the spec's ``test`` method through this connection (refreshing as needed).

        ``rest-api-mapping``: sends the described request; passes on a 2xx response whose
        ``responseMapping`` (if any) is truthy. ``python``: passes when the function
        returns a truthy value (it gets ``api_client``, a client of this connection).

        Returns:
            ``True`` if the test passed, ``False`` if it did not.

        Raises:
            SpecError: the spec has no ``test`` method, or it is ``javascript``.
            RefreshError: the credentials could not be refreshed
                (``ReauthorizationRequired``: the user must reconnect).
            httpx.HTTPError: the request could not be sent.
        """
        return self._test_outcome()[0]

    def _test_outcome(self) -> tuple[bool, str]:
        """:meth:`test`, with the reason (for the command line)."""
        method = self._test_method()
        if method.kind == "javascript":
            return call_sync(self._js_test, method)  # type: ignore[no-any-return]
        if method.kind == "python":
            function = method.function
            assert function is not None
            if function.is_async:
                result = call_sync(self._python_test_async, method)
            else:
                result = self._python_test_sync(method)
            return _python_outcome(method, result)
        rest = self.connector._tests[id(method)]
        with self.client() as client:
            response = client.send(rest.build(client, self._variables()))
            return rest.outcome(response, self._variables())

    async def atest(self) -> bool:
        """Async :meth:`test` (asyncio or trio); a sync python test runs in a worker thread."""
        method = self._test_method()
        if method.kind == "javascript":
            return (await self._js_test(method))[0]
        if method.kind == "python":
            function = method.function
            assert function is not None
            if function.is_async:
                result = await self._python_test_async(method)
            else:
                result = await call_async(self._python_test_sync, method)
            return _python_outcome(method, result)[0]
        rest = self.connector._tests[id(method)]
        async with self.async_client() as client:
            response = await client.send(rest.build(client, self._variables()))
            return rest.outcome(response, self._variables())[0]

    # -- internals ----------------------------------------------------------------------

    def _variables(self, credentials: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            **self._scope,
            "credentials": dict(self.auth.credentials if credentials is None else credentials),
        }

    def _test_method(self) -> Method:
        method = self._methods.get("test")
        if method is None:
            raise self._variant.error("the connector has no test method")
        return method

    def _python_kwargs(
        self, method: Method, client: Any, credentials: Mapping[str, Any] | None = None, **more: Any
    ) -> dict[str, Any]:
        function = method.function
        assert function is not None
        available = {
            "credentials": dict(self.auth.credentials if credentials is None else credentials),
            "connector_parameters": dict(self._connector_parameters),
            "connection_parameters": dict(self._connection_parameters),
            "api_client": client,
            **more,
        }
        return function.kwargs(available)

    def _python_test_sync(self, method: Method) -> Any:
        function = method.function
        assert function is not None
        with self.client() as client:
            return function.function(**self._python_kwargs(method, client))

    async def _python_test_async(self, method: Method) -> Any:
        function = method.function
        assert function is not None
        async with self.async_client() as client:
            return await function.function(**self._python_kwargs(method, client))

    def _library(self, name: str | None) -> ModuleType:
        return self.auth._lib if name is None else _lib.load(name)

    def _auth_for(self, lib: ModuleType) -> Any:
        if lib is self.auth._lib:
            return self.auth
        return auth_class(lib).sharing(self.auth)

    def _client_kwargs(
        self, httpx_kwargs: dict[str, Any], *, is_async: bool, lib: ModuleType
    ) -> dict[str, Any]:
        """The constructor arguments of :meth:`client` / :meth:`async_client`."""
        kwargs = dict(httpx_kwargs)
        if "auth" in kwargs:
            raise TypeError("the connection's client sets auth itself; use connection.auth")
        hooks = kwargs.pop("event_hooks", None) or {}
        if "base_url" not in kwargs:
            base = self.base_url
            if base is not None:
                kwargs["base_url"] = base
        options = {k: kwargs[k] for k in _TRANSPORT_OPTIONS if k in kwargs}
        inner: Any = kwargs.pop("transport", None) or (
            lib.AsyncHTTPTransport(**options) if is_async else lib.HTTPTransport(**options)
        )
        if self._rate_limit.attempts > 1:
            wrapper = AsyncRateLimitTransport if is_async else RateLimitTransport
            inner = wrapper(
                inner, policy=self._rate_limit, limited=self._is_limited, read_all=self._limited
            )
        defunct = (
            [self._acheck_defunct if is_async else self._check_defunct] if self._defunct else []
        )
        auth = self._auth_for(lib)
        guard = auth.aredirect_guard if is_async else auth.redirect_guard
        return {
            **kwargs,
            "auth": auth,
            "transport": inner,
            "event_hooks": {
                "request": [guard, *hooks.get("request", [])],
                "response": [*defunct, *hooks.get("response", [])],
            },
        }

    def _in_scope(self, url: httpx.URL) -> bool:
        key = self._apply.settings(self.auth.credentials).origin_key
        return key is None or (url.scheme, url.host, url.port) == key

    def _refresh_on(self, response: httpx.Response) -> bool:
        if response.status_code == 401:
            return True
        return self._client_spec.matches("access_token_expired", response, self._variables())

    def _is_limited(self, response: httpx.Response) -> bool:
        if response.status_code == 429:
            return True
        return self._limited and self._client_spec.matches(
            "rate_limit_exceeded", response, self._variables()
        )

    def _defunct_error(self, response: httpx.Response) -> ReauthorizationRequired | None:
        if not self._client_spec.matches("connection_is_defunct", response, self._variables()):
            return None
        error = ReauthorizationRequired(
            f"the API reported the connection defunct (HTTP {response.status_code}, "
            "a connection_is_defunct response handler matched); the user must reconnect",
            status_code=response.status_code,
        )
        self.auth._declare_dead(error)
        return error

    def _check_defunct(self, response: httpx.Response) -> None:
        response.read()
        error = self._defunct_error(response)
        if error is not None:
            raise error

    async def _acheck_defunct(self, response: httpx.Response) -> None:
        await response.aread()
        error = self._defunct_error(response)
        if error is not None:
            raise error

    # -- credentials and refresh ----------------------------------------------------------

    def _plain_client(self, credentials: Mapping[str, Any]) -> httpx.Client:
        settings = self._apply.settings(credentials)
        lib = _lib.current()  # the library of the client whose request needed this
        return lib.Client(base_url=settings.base_uri or "", auth=_static_auth(lib, settings))  # type: ignore[no-any-return]

    def _plain_async_client(self, credentials: Mapping[str, Any]) -> httpx.AsyncClient:
        settings = self._apply.settings(credentials)
        lib = _lib.current()
        return lib.AsyncClient(  # type: ignore[no-any-return]
            base_url=settings.base_uri or "", auth=_static_auth(lib, settings)
        )

    def _run_sync(
        self, method: Method, credentials: Mapping[str, Any], **more: Any
    ) -> dict[str, Any]:
        """Run a method from sync code; return its mapping result (javascript: Node.js
        from a private event loop)."""
        if method.kind == "javascript":
            return _as_mapping(method, call_sync(self._run_js, method, credentials, more))
        if method.kind == "mapping":
            return _as_mapping(method, _evaluate(method, self._variables(credentials), more))
        function = method.function
        assert function is not None
        if function.is_async:
            return _as_mapping(method, call_sync(self._run_python_async, method, credentials, more))
        try:
            if "api_client" in function.accepts:
                with self._plain_client(credentials) as client:
                    kwargs = self._python_kwargs(method, client, credentials, **more)
                    result = function.function(**kwargs)
            else:
                result = function.function(**self._python_kwargs(method, None, credentials, **more))
        except Exception as exc:  # noqa: BLE001 - translated: type and line, no message
            raise function.failure(exc) from None
        return _as_mapping(method, result)

    async def _run_async(
        self, method: Method, credentials: Mapping[str, Any], **more: Any
    ) -> dict[str, Any]:
        """Run a method from async code (sync python: worker thread)."""
        if method.kind == "javascript":
            return _as_mapping(method, await self._run_js(method, credentials, more))
        if method.kind != "python":
            return self._run_sync(method, credentials, **more)
        function = method.function
        assert function is not None
        if function.is_async:
            return _as_mapping(method, await self._run_python_async(method, credentials, more))
        return await call_async(self._run_sync, method, credentials, **more)  # type: ignore[no-any-return]

    async def _run_python_async(
        self, method: Method, credentials: Mapping[str, Any], more: dict[str, Any]
    ) -> Any:
        function = method.function
        assert function is not None
        try:
            if "api_client" in function.accepts:
                async with self._plain_async_client(credentials) as client:
                    kwargs = self._python_kwargs(method, client, credentials, **more)
                    return await function.function(**kwargs)
            kwargs = self._python_kwargs(method, None, credentials, **more)
            return await function.function(**kwargs)
        except Exception as exc:  # noqa: BLE001 - translated: type and line, no message
            raise function.failure(exc) from None

    # -- javascript ---------------------------------------------------------------------

    def _js_args(
        self, method: Method, credentials: Mapping[str, Any], more: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The argument object, with the JavaScript names the method's docs give."""
        names = METHODS[method.name][0]
        available = {
            **self._scope,
            "credentials": dict(credentials),
            "tokenResponse": more.get("token_response"),
        }
        return {name: available[name] for name in names if available.get(name) is not None}

    async def _call_js(
        self,
        method: Method,
        credentials: Mapping[str, Any],
        more: Mapping[str, Any],
        api: Any = None,
    ) -> Any:
        return await self._runtime.call(
            name=method.name,
            where=method.file,
            root=self.connector._root,
            args=self._js_args(method, credentials, more),
            file=method.script,
            code=method.code,
            code_line=method.line if method.code is not None else None,
            api=api,
        )

    async def _run_js(
        self, method: Method, credentials: Mapping[str, Any], more: Mapping[str, Any]
    ) -> Any:
        """Run a javascript refresh-type method; its ``apiClient`` is a plain client."""
        clients: list[httpx.AsyncClient] = []

        async def api(message: Mapping[str, Any]) -> dict[str, Any]:
            if not clients:
                clients.append(self._plain_async_client(credentials))
            return await _api_request(clients[0], message, method)

        offered = "api_client" in METHODS[method.name][1]
        try:
            return await self._call_js(method, credentials, more, api if offered else None)
        except JavaScriptError as exc:
            raise exc.as_refresh_error() from None
        finally:
            for client in clients:
                with anyio.CancelScope(shield=True):
                    await client.aclose()

    def _js_client_sync(self, credentials: Mapping[str, Any]) -> Settings:
        return call_sync(self._js_client, credentials)  # type: ignore[no-any-return]

    async def _js_client(self, credentials: Mapping[str, Any]) -> Settings:
        """A javascript makeApiClient's settings for ``credentials``."""
        method = self._methods["makeApiClient"]
        try:
            value = await self._call_js(method, credentials, {})
        except JavaScriptError as exc:
            raise SpecError(str(exc)) from None
        return self._client_spec.from_result(
            value, f"makeApiClient in {method.file}", method.error, extra=_JS_CLIENT_EXTRA
        )

    async def _js_test(self, method: Method) -> tuple[bool, str]:
        """A javascript test: truthy passes; a throw fails; ``apiClient`` is a client
        of this connection (refresh, rate-limit retries)."""
        async with self.async_client() as client:

            async def api(message: Mapping[str, Any]) -> dict[str, Any]:
                return await _api_request(client, message, method)

            try:
                value = await self._call_js(method, self.auth.credentials, {}, api)
            except JavaScriptError as exc:
                return False, str(exc)
        return bool(value), f"test in {method.file} returned {_js_type(value)}"

    def _initial_credentials(self) -> dict[str, Any]:
        method = self._methods.get("getCredentialsFromConnectionParameters")
        if method is None:
            return dict(self._connection_parameters)
        return self._run_sync(method, {})

    def _refresher(self) -> tuple[Any, bool]:
        """The refresher for ``RefreshAuth`` and whether it can ever produce a token."""
        custom = self._methods.get("refreshCredentials")
        if custom is not None:
            if custom.kind == "javascript" or (
                custom.function is not None and custom.function.is_async
            ):
                return self._arefresh_custom, True
            return self._refresh_custom, True
        if self.auth_type == "oauth2":
            return _OAuth2(self), True
        return _no_refresh, False

    def _refresh_custom(self, *, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        return self._run_sync(self._methods["refreshCredentials"], credentials)

    async def _arefresh_custom(self, *, credentials: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        return await self._run_async(self._methods["refreshCredentials"], credentials)


def _evaluate(method: Method, variables: dict[str, Any], more: dict[str, Any]) -> Any:
    compiled: Compiled | None = method.compiled
    assert compiled is not None
    if "token_response" in more:
        variables = {**variables, "tokenResponse": more["token_response"]}
    return compiled.evaluate(variables)


def _as_mapping(method: Method, result: Any) -> dict[str, Any]:
    if isinstance(result, Mapping):
        return {k: v for k, v in result.items() if v is not UNDEFINED}
    if method.kind == "javascript":
        raise SpecError(
            f"{method.name} returned {_js_type(result)}, expected an object (its keys are "
            "merged into the credentials)",
            file=method.file,
        )
    if method.function is not None:
        raise method.function.error(
            f"{method.function.function.__name__}() returned {type(result).__name__}, "
            "expected a mapping"
        )
    kind = "nothing" if result is UNDEFINED else type(result).__name__
    raise method.error(f"{method.name} evaluated to {kind}, expected a mapping")


def _js_type(value: Any) -> str:
    """The JavaScript name of a JSON-decoded value's type."""
    if value is None:
        return "null or undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    return "an array" if isinstance(value, list) else "an object"


async def _api_request(
    client: httpx.AsyncClient, message: Mapping[str, Any], method: Method
) -> dict[str, Any]:
    """Send one ``apiClient`` request of a javascript method; the reply for the runner.

    Raises:
        SpecError: the request is malformed (method, path, query or headers).
        httpx.HTTPError: it could not be sent (the javascript call is abandoned).
    """
    verb, path = message.get("method"), message.get("path")
    if verb not in _HTTP_METHODS or not isinstance(path, str):
        raise method.error("apiClient was called with an unknown method or a non-string path")
    query, headers = message.get("query"), message.get("headers")
    if query is not None and not isinstance(query, Mapping):
        raise method.error("apiClient query must be an object")
    if headers is not None and not isinstance(headers, Mapping):
        raise method.error("apiClient headers must be an object")
    body, defaults = encode_request_body(message.get("body"))
    sent = dict(defaults)
    for name, value in (headers or {}).items():
        if value is not None:
            sent[str(name)] = str(value)
    params = {
        str(name): value
        for name, value in (query or {}).items()
        if value is not None and not isinstance(value, Mapping)
    }
    response = await client.request(verb, path, params=params, headers=sent, **body)
    await response.aread()
    variables = response_variables(response)
    return {
        "status": response.status_code,
        "headers": variables["headers"],
        "data": variables["data"],
    }


def _python_outcome(method: Method, result: Any) -> tuple[bool, str]:
    name = method.function.function.__name__ if method.function is not None else "test"
    return bool(result), f"{name}() in {method.file} returned {type(result).__name__}"


def _no_refresh(**_: Any) -> dict[str, Any]:
    raise ReauthorizationRequired(
        "the API rejected the credentials and the connector defines no refreshCredentials; "
        "the user must reconnect"
    )


class _OAuth2:
    """The standard oauth2 refresh: RFC 6749 section 6 with ``getOAuthConfig``'s settings.

    ``getOAuthConfig`` is evaluated for every refresh (its result may depend on the
    parameters); ``getCredentialsFromRefreshTokenResponse``, when present, turns the
    token response into the credentials to merge (its fields are added to the response's).
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._cached: tuple[tuple[Any, ...], OAuth2Refresh] | None = None

    def __repr__(self) -> str:
        return "<oauth2 refresh from getOAuthConfig>"

    def _grant(self, config: Mapping[str, Any]) -> OAuth2Refresh:
        method = self._connection._methods["getOAuthConfig"]

        def fail(message: str) -> SpecError:
            if method.function is not None:
                return method.function.error(f"get_oauth_config() {message}")
            return method.error(f"getOAuthConfig {message}")

        token_uri = config.get("tokenUri")
        if not isinstance(token_uri, str) or not token_uri:
            raise fail("gave no tokenUri")
        try:
            url = httpx.URL(token_uri)
        except httpx.InvalidURL:
            raise fail("tokenUri is not a valid URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise fail("tokenUri is not an absolute http(s) URL")
        client_id, client_secret = config.get("clientId"), config.get("clientSecret")
        if not isinstance(client_id, str) or not client_id:
            raise fail("gave no clientId")
        if client_secret is not None and not isinstance(client_secret, str):
            raise fail("clientSecret is not a string")
        location = config.get("clientAuthLocation", "headers")
        if location not in ("headers", "header", "body"):
            # the value is not shown: a formula could have put a secret there
            raise fail(
                f"clientAuthLocation must be headers or body, got a {type(location).__name__}"
            )
        client_auth: Literal["basic", "body"] = "body" if location == "body" else "basic"
        key = (token_uri, client_id, client_secret, client_auth)
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        grant = OAuth2Refresh(
            token_uri, client_id=client_id, client_secret=client_secret, client_auth=client_auth
        )
        self._cached = (key, grant)
        return grant

    @staticmethod
    def _no_refresh_token(config: Mapping[str, Any]) -> None:
        if config.get("noRefreshToken") is True:
            raise ReauthorizationRequired(
                "the connector's API issues no refresh tokens (noRefreshToken); the access "
                "token was rejected and the user must reconnect"
            )

    def __call__(
        self,
        *,
        credentials: Mapping[str, Any],
        connector_parameters: Mapping[str, Any],
        connection_parameters: Mapping[str, Any],
    ) -> dict[str, Any]:
        connection = self._connection
        config = connection._run_sync(connection._methods["getOAuthConfig"], credentials)
        self._no_refresh_token(config)
        token = self._grant(config)(
            credentials=credentials,
            connector_parameters=connector_parameters,
            connection_parameters=connection_parameters,
        )
        extract = connection._methods.get("getCredentialsFromRefreshTokenResponse")
        if extract is None:
            return dict(token)
        extra = connection._run_sync(extract, credentials, token_response=dict(token))
        return {**token, **extra}

    async def acall(
        self,
        *,
        credentials: Mapping[str, Any],
        connector_parameters: Mapping[str, Any],
        connection_parameters: Mapping[str, Any],
    ) -> dict[str, Any]:
        connection = self._connection
        config = await connection._run_async(connection._methods["getOAuthConfig"], credentials)
        self._no_refresh_token(config)
        token = await self._grant(config).acall(
            credentials=credentials,
            connector_parameters=connector_parameters,
            connection_parameters=connection_parameters,
        )
        extract = connection._methods.get("getCredentialsFromRefreshTokenResponse")
        if extract is None:
            return dict(token)
        extra = await connection._run_async(extract, credentials, token_response=dict(token))
        return {**token, **extra}
