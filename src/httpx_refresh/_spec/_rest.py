"""``rest-api-mapping`` for the ``test`` method: one request, and what counts as success."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

import httpx

from ._client import response_variables
from ._formulas import UNDEFINED, Compiled, compile_value
from ._methods import METHODS, Method

__all__ = ["RestTest"]

_KEYS: Final = ("path", "method", "requestMapping", "responseMapping")
_REQUEST_KEYS: Final = ("query", "headers", "data", "pathParameters")
_HTTP_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class RestTest:
    """A compiled ``rest-api-mapping``: ``path``, ``method``, ``requestMapping``
    (``query``, ``headers``, ``data``, ``pathParameters``) and ``responseMapping``
    (evaluated with the extra variable ``response``: ``{data, headers, statusCode}``).

    Args:
        method: the loaded ``test`` method.

    Raises:
        SpecError: an unknown key, a wrong type, or a formula problem.
    """

    def __init__(self, method: Method) -> None:
        document, path, body = method.document, method.body_path, method.body
        assert document is not None
        roots = METHODS["test"][0]
        if not isinstance(body, dict):
            raise document.error("a rest-api-mapping is a mapping with path and method", path)
        for key in body:
            if key not in _KEYS:
                raise document.error(
                    f"unknown rest-api-mapping key {key!r} (known: {', '.join(_KEYS)})",
                    (*path, key),
                )
        if "path" not in body:
            raise document.error("a rest-api-mapping needs a path", path)
        verb = body.get("method", "get")
        if not isinstance(verb, str) or verb.upper() not in _HTTP_METHODS:
            raise document.error(
                f"method must be one of {', '.join(_HTTP_METHODS)}", (*path, "method")
            )
        self.method = verb.upper()
        self.path = compile_value(body["path"], document, (*path, "path"), roots=roots)
        request = body.get("requestMapping", {})
        if not isinstance(request, dict):
            raise document.error("requestMapping must be a mapping", (*path, "requestMapping"))
        self.parts: dict[str, Compiled] = {}
        for key, value in request.items():
            here = (*path, "requestMapping", key)
            if key not in _REQUEST_KEYS:
                raise document.error(
                    f"unknown requestMapping key {key!r} (known: {', '.join(_REQUEST_KEYS)})",
                    here,
                )
            if key != "data" and not isinstance(value, dict):
                raise document.error(f"requestMapping.{key} must be a mapping", here)
            self.parts[key] = compile_value(value, document, here, roots=roots)
        self.response: Compiled | None = None
        if "responseMapping" in body:
            self.response = compile_value(
                body["responseMapping"],
                document,
                (*path, "responseMapping"),
                roots=(*roots, "response"),
            )
        self._document = document
        self._where = path

    def _part(self, key: str, variables: dict[str, Any]) -> Any:
        compiled = self.parts.get(key)
        return UNDEFINED if compiled is None else compiled.evaluate(variables)

    def build(
        self, client: httpx.Client | httpx.AsyncClient, variables: dict[str, Any]
    ) -> httpx.Request:
        """Build the request on ``client`` (its ``base_url`` and auth apply when sent).

        Raises:
            SpecError: ``path`` did not evaluate to a string.
        """
        target = self.path.evaluate(variables)
        if not isinstance(target, str):
            raise self._document.error("path evaluated to a non-string", (*self._where, "path"))
        parameters = self._part("pathParameters", variables)
        if isinstance(parameters, dict):
            for name, value in parameters.items():
                target = target.replace(f"{{{name}}}", quote(str(value), safe=""))
        query = self._part("query", variables)
        headers = self._part("headers", variables)
        data = self._part("data", variables)
        return client.build_request(
            self.method,
            target,
            params={k: str(v) for k, v in query.items()} if isinstance(query, dict) else None,
            headers={k: str(v) for k, v in headers.items()} if isinstance(headers, dict) else None,
            json=None if data is UNDEFINED else data,
        )

    def outcome(self, response: httpx.Response, variables: dict[str, Any]) -> tuple[bool, str]:
        """Passed if the response is 2xx and ``responseMapping`` (if any) evaluates truthy.

        Returns:
            ``(passed, reason)``; the reason names the status or the failed mapping.
        """
        request = response.request
        what = f"{request.method} {request.url.path}"
        if not 200 <= response.status_code < 300:
            return False, f"HTTP {response.status_code} from {what}"
        if self.response is None:
            return True, f"HTTP {response.status_code} from {what}"
        value = self.response.evaluate({**variables, "response": response_variables(response)})
        if not value:
            return False, f"responseMapping was false for HTTP {response.status_code} from {what}"
        return True, f"HTTP {response.status_code} from {what}; responseMapping true"
