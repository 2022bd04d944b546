"""httpx-refresh: keep a connection's credentials working behind httpx.

Public names only; everything lives in private modules.
"""

import logging as _logging

from ._apply import bearer, headers, query_param
from ._auth import RefreshAuth
from ._exceptions import (
    HttpxRefreshError,
    ReauthorizationRequired,
    RefreshError,
    RequestNotReplayable,
    SpecError,
    StoreError,
)
from ._flight import RefreshStats
from ._oauth2 import ClientCredentialsRefresh, OAuth2Refresh
from ._retry import RetryPolicy, set_testing
from ._spec import Connection, Connector, load_connector
from ._stores import CredentialStore, FileStore, MemoryStore, RedisStore, Stored

__all__ = [
    "ClientCredentialsRefresh",
    "Connection",
    "Connector",
    "CredentialStore",
    "FileStore",
    "HttpxRefreshError",
    "MemoryStore",
    "OAuth2Refresh",
    "ReauthorizationRequired",
    "RedisStore",
    "RefreshAuth",
    "RefreshError",
    "RefreshStats",
    "RequestNotReplayable",
    "RetryPolicy",
    "SpecError",
    "StoreError",
    "Stored",
    "bearer",
    "headers",
    "load_connector",
    "query_param",
    "set_testing",
]

__version__ = "0.1.0"

# Library convention: log records go nowhere unless the application configures logging.
_logging.getLogger("httpx_refresh").addHandler(_logging.NullHandler())
