"""Integration.app-style connector specs: loader, formulas, connector and connection."""

from ._connector import Connection, Connector, load_connector

__all__ = ["Connection", "Connector", "load_connector"]
