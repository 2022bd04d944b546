"""Integration.app formulas, compiled once and evaluated against a method's variables.

A formula is a mapping whose key starts with ``$`` (``{"$var": "credentials.access_token"}``);
anything else is a literal, evaluated member by member. Supported (after the Integration.app
formula reference): ``$var``, ``$concat``, ``$tpl``, ``$eval`` with ``is``, ``isNot``,
``isEmpty``, ``isNotEmpty``, ``contains``, ``doesNotContain``, ``oneOf``, ``noneOf``, ``gt``,
``gte``, ``lt``, ``lte``; ``$and``, ``$or``, ``$case``, ``$firstNotEmpty``, ``$map`` and
``$plain``. Any other ``$name`` is a ``SpecError`` at load time, with file, line and key.

Formulas only look values up, compare and join them: nothing in a spec can run code.
A ``$var`` path that leads nowhere evaluates to :data:`UNDEFINED`, and a mapping key whose
value is undefined is dropped (as JavaScript drops ``undefined`` when it serialises). A
``$concat`` or ``$tpl`` with an undefined member is undefined too, so that a header such as
``Bearer <token>`` is left out rather than sent half-built; wrap an optional member in
``$firstNotEmpty: [..., ""]``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from .._exceptions import SpecError
from ._yaml import Document, KeyPath, dotted

__all__ = ["UNDEFINED", "Compiled", "compile_value", "is_empty", "parse_path", "resolve"]


class _Undefined:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final = _Undefined()

Scope = Mapping[str, Any]
Evaluator = Callable[[Scope], Any]

OPERATORS: Final = (
    "is",
    "isNot",
    "isEmpty",
    "isNotEmpty",
    "contains",
    "doesNotContain",
    "oneOf",
    "noneOf",
    "gt",
    "gte",
    "lt",
    "lte",
)
# Integration.app formulas that this library does not evaluate (they need its platform).
_PLATFORM: Final = frozenset(
    {
        "$lookup",
        "$iterate",
        "$copy",
        "$firstName",
        "$lastName",
        "$findExternalRecordId",
        "$findAppRecordId",
        "$dataSchemaRef",
        "$jsonata",
        "$formula",
        "$cond",
    }
)
_SUPPORTED: Final = "$var, $concat, $tpl, $eval, $and, $or, $case, $firstNotEmpty, $map, $plain"


def is_empty(value: Any) -> bool:
    """Integration.app's ``isEmpty``: undefined, ``None``, ``""``, ``[]`` or ``{}``."""
    return (
        value is UNDEFINED or value is None or (isinstance(value, (str, list, dict)) and not value)
    )


_SEGMENT = re.compile(r"(?:\\.|[^.\[\]\\])+|\[(\d+)\]|\.")


def parse_path(text: str) -> tuple[str | int, ...] | None:
    """Split a ``$var`` locator (``$.a.b[0]``, ``a\\.b``) into keys; ``None`` if malformed."""
    if text.startswith("$."):
        text = text[2:]
    elif text == "$":
        return ()
    parts: list[str | int] = []
    position = 0
    expect_key = True
    while position < len(text):
        match = _SEGMENT.match(text, position)
        if match is None:
            return None
        token = match.group(0)
        if token == ".":
            if expect_key:
                return None
            expect_key = True
        elif match.group(1) is not None:
            if not parts:
                return None
            parts.append(int(match.group(1)))
            expect_key = False
        else:
            if not expect_key:
                return None
            parts.append(re.sub(r"\\(.)", r"\1", token))
            expect_key = False
        position = match.end()
    if expect_key and parts:
        return None
    return tuple(parts) if parts else None


def resolve(scope: Any, path: tuple[str | int, ...]) -> Any:
    """Follow ``path`` into nested mappings and lists; :data:`UNDEFINED` where it ends."""
    value = scope
    for part in path:
        if isinstance(part, int):
            if not isinstance(value, list) or part >= len(value):
                return UNDEFINED
            value = value[part]
        elif isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return UNDEFINED
    return value


def _text(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if value is None or value is UNDEFINED:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return left == right
    if left is UNDEFINED:
        return right is None or right is UNDEFINED
    return bool(left == right)


def _compare(operator: str, left: Any, right: Any) -> bool:
    if operator == "is":
        return _equal(left, right)
    if operator == "isNot":
        return not _equal(left, right)
    if operator == "isEmpty":
        return is_empty(left)
    if operator == "isNotEmpty":
        return not is_empty(left)
    if operator in ("contains", "doesNotContain"):
        if isinstance(left, str):
            found = isinstance(right, str) and right in left
        elif isinstance(left, list):
            found = any(_equal(item, right) for item in left)
        else:
            found = False
        return found if operator == "contains" else not found
    if operator in ("oneOf", "noneOf"):
        found = isinstance(right, list) and any(_equal(left, item) for item in right)
        return found if operator == "oneOf" else not found
    # gt, gte, lt, lte: numbers (decimal numeric strings count), otherwise false.
    a, b = _number(left), _number(right)
    if a is None or b is None:
        return False
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[operator]


_NUMERIC = re.compile(r"\s*-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value == value and abs(value) != float("inf") else None
    if isinstance(value, str) and _NUMERIC.fullmatch(value):
        return float(value)
    return None


class Compiled:
    """A compiled formula tree.

    Args:
        evaluate: the evaluator, called with the variables (a mapping of root names).
        constant: true when no formula is inside (the value never changes).
        roots: the variable names the tree reads (``credentials``, ...).
        paths: every ``$var`` path it reads, split into keys.
    """

    __slots__ = ("constant", "evaluate", "paths", "roots")

    def __init__(
        self,
        evaluate: Evaluator,
        *,
        constant: bool,
        roots: frozenset[str],
        paths: frozenset[tuple[str | int, ...]] = frozenset(),
    ) -> None:
        self.evaluate = evaluate
        self.constant = constant
        self.roots = roots
        self.paths = paths


class _Compiler:
    def __init__(self, document: Document, roots: Collection[str]) -> None:
        self.document = document
        self.roots = frozenset(roots)
        self.used: set[str] = set()
        self.paths: set[tuple[str | int, ...]] = set()

    def error(self, message: str, path: KeyPath) -> SpecError:
        return self.document.error(message, path)

    # -- dispatch --------------------------------------------------------------------

    def value(self, value: Any, path: KeyPath) -> Evaluator:
        if isinstance(value, dict):
            names = [key for key in value if isinstance(key, str) and key.startswith("$")]
            if names:
                return self.formula(value, names, path)
            members = {key: self.value(item, (*path, key)) for key, item in value.items()}

            def mapping(scope: Scope) -> Any:
                result = {}
                for key, member in members.items():
                    item = member(scope)
                    if item is not UNDEFINED:
                        result[key] = item
                return result

            return mapping
        if isinstance(value, list):
            items = [self.value(item, (*path, index)) for index, item in enumerate(value)]

            def sequence(scope: Scope) -> Any:
                return [None if (item := member(scope)) is UNDEFINED else item for member in items]

            return sequence
        return lambda scope: value

    def formula(self, value: dict[str, Any], names: list[str], path: KeyPath) -> Evaluator:
        if "$eval" in value:
            return self.eval_(value, path)
        if len(names) > 1:
            raise self.error(f"one formula per mapping, found {', '.join(names)}", path)
        name = names[0]
        here = (*path, name)
        if len(value) != 1:
            others = ", ".join(repr(key) for key in value if key != name)
            raise self.error(f"formula {name} takes no sibling keys, found {others}", path)
        argument = value[name]
        method = {
            "$var": self.var,
            "$concat": self.concat,
            "$tpl": self.tpl,
            "$and": self.and_or,
            "$or": self.and_or,
            "$case": self.case,
            "$firstNotEmpty": self.first_not_empty,
            "$map": self.map_,
            "$plain": self.plain,
        }.get(name)
        if method is None:
            if name in _PLATFORM:
                raise self.error(
                    f"formula {name} needs the Integration.app platform and is not supported "
                    f"here (supported: {_SUPPORTED})",
                    here,
                )
            raise self.error(f"unknown formula {name} (supported: {_SUPPORTED})", here)
        if name in ("$and", "$or"):
            return self.and_or(argument, here, any_=name == "$or")
        evaluator: Evaluator = method(argument, here)  # type: ignore[operator]
        return evaluator

    # -- formulas --------------------------------------------------------------------

    def locate(self, locator: Any, path: KeyPath, what: str) -> tuple[str | int, ...]:
        if not isinstance(locator, str):
            raise self.error(f"{what} takes a path string, got {_kind(locator)}", path)
        parts = parse_path(locator.strip())
        if parts is None:
            raise self.error(f"{what} path {locator!r} is not a valid locator (a.b[0])", path)
        if not parts:
            raise self.error(f"{what} path {locator!r} names no variable", path)
        root = parts[0]
        if not isinstance(root, str) or root not in self.roots:
            known = ", ".join(sorted(self.roots)) or "none"
            raise self.error(
                f"{what} path {locator!r} starts with {root!r}, which is not a variable "
                f"here (known: {known})",
                path,
            )
        self.used.add(root)
        self.paths.add(parts)
        return parts

    def var(self, locator: Any, path: KeyPath) -> Evaluator:
        parts = self.locate(locator, path, "$var")
        return lambda scope: resolve(scope, parts)

    def concat(self, argument: Any, path: KeyPath) -> Evaluator:
        delimiter = ""
        if isinstance(argument, dict):
            unknown = set(argument) - {"values", "delimiter"}
            if unknown or "values" not in argument:
                raise self.error("$concat takes a list, or {values: [...], delimiter: ...}", path)
            delimiter_value = argument.get("delimiter", "")
            if not isinstance(delimiter_value, str):
                raise self.error("$concat delimiter must be a string", (*path, "delimiter"))
            delimiter = delimiter_value
            argument, path = argument["values"], (*path, "values")
        if not isinstance(argument, list):
            raise self.error(f"$concat takes a list, got {_kind(argument)}", path)
        parts = [self.value(item, (*path, index)) for index, item in enumerate(argument)]

        def concat(scope: Scope) -> Any:
            values = [part(scope) for part in parts]
            if any(value is UNDEFINED for value in values):
                return UNDEFINED  # never "Bearer " with the token missing: drop the key
            return delimiter.join(_text(value) for value in values)

        return concat

    def tpl(self, argument: Any, path: KeyPath) -> Evaluator:
        if (
            not isinstance(argument, dict)
            or set(argument) - {"template", "values"}
            or not isinstance(argument.get("template"), str)
        ):
            raise self.error("$tpl takes {template: 'text with {name}', values: {name: ...}}", path)
        template: str = argument["template"]
        raw_values = argument.get("values", {})
        if not isinstance(raw_values, dict):
            raise self.error("$tpl values must be a mapping", (*path, "values"))
        values = {key: self.value(item, (*path, "values", key)) for key, item in raw_values.items()}
        pieces = re.split(r"\{([A-Za-z_][A-Za-z0-9_.-]*)\}", template)
        for name in pieces[1::2]:
            if name not in values:
                raise self.error(
                    f"$tpl template uses {{{name}}}, which is not in its values",
                    (*path, "template"),
                )

        def tpl(scope: Scope) -> Any:
            out = []
            for index, piece in enumerate(pieces):
                if index % 2:
                    value = values[piece](scope)
                    if value is UNDEFINED:
                        return UNDEFINED  # as $concat: nothing half-built
                    out.append(_text(value))
                else:
                    out.append(piece)
            return "".join(out)

        return tpl

    def eval_(self, value: dict[str, Any], path: KeyPath) -> Evaluator:
        operators = [key for key in value if key != "$eval"]
        if len(operators) == 1 and operators[0] not in OPERATORS:
            raise self.error(
                f"unknown $eval operator {operators[0]!r} (known: {', '.join(OPERATORS)})",
                (*path, operators[0]),
            )
        if len(operators) != 1 or operators[0] not in OPERATORS:
            found = ", ".join(operators) or "none"
            raise self.error(
                f"$eval takes exactly one operator out of {', '.join(OPERATORS)}; found {found}",
                path,
            )
        operator = operators[0]
        subject = self.value(value["$eval"], (*path, "$eval"))
        operand = self.value(value[operator], (*path, operator))
        if operator in ("oneOf", "noneOf") and not isinstance(value[operator], (list, dict)):
            raise self.error(f"$eval {operator} takes a list", (*path, operator))
        return lambda scope: _compare(operator, subject(scope), operand(scope))

    def and_or(self, argument: Any, path: KeyPath, *, any_: bool) -> Evaluator:
        if not isinstance(argument, list) or not argument:
            raise self.error(f"{path[-1]} takes a non-empty list", path)
        parts = [self.value(item, (*path, index)) for index, item in enumerate(argument)]
        if any_:
            return lambda scope: any(bool(part(scope)) for part in parts)
        return lambda scope: all(bool(part(scope)) for part in parts)

    def condition(self, condition: Any, path: KeyPath) -> Evaluator:
        if isinstance(condition, dict) and any(str(key).startswith("$") for key in condition):
            formula = self.value(condition, path)
            return lambda scope: bool(formula(scope))
        if not isinstance(condition, dict) or set(condition) - {"field", "operator", "value"}:
            raise self.error("a filter condition is {field, operator, value}", path)
        operator = condition.get("operator", "is")
        if operator not in OPERATORS:
            raise self.error(
                f"unknown operator {operator!r} (known: {', '.join(OPERATORS)})",
                (*path, "operator"),
            )
        field = self.locate(condition.get("field"), (*path, "field"), "filter field")
        operand = self.value(condition.get("value"), (*path, "value"))
        return lambda scope: _compare(operator, resolve(scope, field), operand(scope))

    def case(self, argument: Any, path: KeyPath) -> Evaluator:
        cases_path = path
        default: Evaluator = lambda scope: UNDEFINED  # noqa: E731
        if isinstance(argument, dict):
            if set(argument) - {"cases", "default"} or not isinstance(argument.get("cases"), list):
                raise self.error("$case takes {cases: [{filter, value}], default}", path)
            if "default" in argument:
                default = self.value(argument["default"], (*path, "default"))
            argument, cases_path = argument["cases"], (*path, "cases")
        if not isinstance(argument, list):
            raise self.error(f"$case takes a list of cases, got {_kind(argument)}", path)
        compiled: list[tuple[list[Evaluator], Evaluator]] = []
        for index, case in enumerate(argument):
            here = (*cases_path, index)
            if not isinstance(case, dict) or set(case) - {"filter", "value"}:
                raise self.error("a $case case is {filter: [...], value: ...}", here)
            raw_filter = case.get("filter", [])
            conditions = raw_filter if isinstance(raw_filter, list) else [raw_filter]
            tests = [
                self.condition(
                    item,
                    (*here, "filter", i) if isinstance(raw_filter, list) else (*here, "filter"),
                )
                for i, item in enumerate(conditions)
            ]
            compiled.append((tests, self.value(case.get("value"), (*here, "value"))))

        def case_(scope: Scope) -> Any:
            for tests, value in compiled:
                if all(test(scope) for test in tests):
                    return value(scope)
            return default(scope)

        return case_

    def first_not_empty(self, argument: Any, path: KeyPath) -> Evaluator:
        if not isinstance(argument, list):
            raise self.error(f"$firstNotEmpty takes a list, got {_kind(argument)}", path)
        parts = [self.value(item, (*path, index)) for index, item in enumerate(argument)]

        def first(scope: Scope) -> Any:
            value: Any = UNDEFINED
            for part in parts:
                value = part(scope)
                if not is_empty(value):
                    return value
            return value  # all empty: the last one (so [..., ""] gives "")

        return first

    def map_(self, argument: Any, path: KeyPath) -> Evaluator:
        if (
            not isinstance(argument, dict)
            or set(argument) - {"value", "mapping", "mappings", "default"}
            or "value" not in argument
        ):
            raise self.error("$map takes {value, mapping: [{from, to}], default}", path)
        key = "mapping" if "mapping" in argument else "mappings"
        rows = argument.get(key, [])
        if not isinstance(rows, list) or not all(
            isinstance(row, dict) and set(row) <= {"from", "to"} for row in rows
        ):
            raise self.error("$map mapping is a list of {from, to}", (*path, key))
        subject = self.value(argument["value"], (*path, "value"))
        table = [
            (
                self.value(row.get("from"), (*path, key, i, "from")),
                self.value(row.get("to"), (*path, key, i, "to")),
            )
            for i, row in enumerate(rows)
        ]
        default = (
            self.value(argument["default"], (*path, "default"))
            if "default" in argument
            else (lambda scope: UNDEFINED)
        )

        def map_(scope: Scope) -> Any:
            value = subject(scope)
            for source, target in table:
                if _equal(value, source(scope)):
                    return target(scope)
            return default(scope)

        return map_

    def plain(self, argument: Any, path: KeyPath) -> Evaluator:
        return lambda scope: copy.deepcopy(argument)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def _has_formula(value: Any) -> bool:
    if isinstance(value, dict):
        return any(str(key).startswith("$") for key in value) or any(
            _has_formula(item) for item in value.values()
        )
    if isinstance(value, list):
        return any(_has_formula(item) for item in value)
    return False


def compile_value(
    value: Any, document: Document, path: KeyPath, *, roots: Collection[str]
) -> Compiled:
    """Compile ``value`` (a literal or a formula tree) found at ``path`` in ``document``.

    Args:
        value: the parsed YAML value.
        document: the file it came from (for error locations).
        path: its key path in that file.
        roots: the variable names a ``$var`` may start with (``credentials``,
            ``connectorParameters``, ...).

    Returns:
        The :class:`Compiled` tree.

    Raises:
        SpecError: an unknown or unsupported formula, a formula with the wrong shape,
            or a ``$var`` path that is malformed or starts with an unknown variable.
    """
    compiler = _Compiler(document, roots)
    evaluate = compiler.value(value, path)
    return Compiled(
        evaluate,
        constant=not _has_formula(value),
        roots=frozenset(compiler.used),
        paths=frozenset(compiler.paths),
    )


def describe(path: KeyPath) -> str:
    """The dotted form of a key path (re-exported for callers that build messages)."""
    return dotted(path)
