"""The formula engine of connector specs (DESIGN "Connector specs", spec_reference section 2).

Formulas are compiled once with ``compile_value`` and evaluated against a mapping of
variables. These tests pin the exact value of every supported formula, the undefined
rules (dropped mapping keys, ``None`` list members) and that nothing in a formula can
run code or reach Python attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from httpx_refresh import SpecError
from httpx_refresh._spec._formulas import UNDEFINED, Compiled, compile_value
from httpx_refresh._spec._yaml import Document, load_yaml

ROOTS = ("credentials", "connectorParameters", "input")

SCOPE: dict[str, Any] = {
    "credentials": {
        "access_token": "tok-1",
        "token_type": "Bearer",
        "expires_in": 3600,
        "a.b": "dotted-key",
        "a[0]": "bracket-key",
        "nested": {"deep": {"value": "v"}},
        "list": ["first", {"name": "second"}],
        "empty_string": "",
        "none": None,
        "zero": 0,
        "false": False,
    },
    "connectorParameters": {"clientId": "cid", "region": "eu"},
    "input": {"status": "Won", "count": 5, "tags": ["a", "b"], "title": "hello world"},
}


def compiled(value: Any, *, roots: tuple[str, ...] = ROOTS) -> Compiled:
    return compile_value(value, Document("f.yml", value, {}), (), roots=roots)


def ev(value: Any, scope: dict[str, Any] | None = None) -> Any:
    return compiled(value).evaluate(SCOPE if scope is None else scope)


# -- $var ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locator", "expected"),
    [
        ("credentials.access_token", "tok-1"),
        ("$.credentials.access_token", "tok-1"),
        ("credentials.nested.deep.value", "v"),
        ("$.credentials.nested.deep", {"value": "v"}),
        ("credentials.list[0]", "first"),
        ("credentials.list[1].name", "second"),
        ("$.credentials.list[1]", {"name": "second"}),
        ("credentials.a\\.b", "dotted-key"),
        ("credentials.a\\[0\\]", "bracket-key"),
        ("credentials.expires_in", 3600),
        ("credentials.none", None),
        ("connectorParameters", {"clientId": "cid", "region": "eu"}),
    ],
)
def test_var_paths(locator: str, expected: Any) -> None:
    """``$var`` follows dotted paths (``$.`` optional), ``[i]`` indexes and ``\\.`` escapes."""
    assert ev({"$var": locator}) == expected


@pytest.mark.parametrize(
    "locator",
    [
        "credentials.missing",
        "$.credentials.missing.deeper",
        "credentials.list[2]",
        "credentials.list[0].name",  # a string has no keys
        "credentials.nested[0]",  # a mapping is not a list
        "credentials.a.b",  # the unescaped path looks for credentials["a"]["b"]
        "input.tags.length",  # no JavaScript properties either
    ],
)
def test_var_missing_is_undefined(locator: str) -> None:
    """A ``$var`` path that leads nowhere evaluates to UNDEFINED (not None, no error)."""
    assert ev({"$var": locator}) is UNDEFINED


def test_var_with_a_variable_that_is_absent_from_the_scope() -> None:
    """A known root that the scope does not hold is undefined too."""
    assert ev({"$var": "input.status"}, {"credentials": {}}) is UNDEFINED


def test_undefined_mapping_key_is_dropped_and_list_member_becomes_none() -> None:
    """Undefined values: the mapping key disappears, a list member becomes None (JSON rules)."""
    value = {
        "kept": {"$var": "credentials.access_token"},
        "dropped": {"$var": "credentials.missing"},
        "null_is_kept": {"$var": "credentials.none"},
        "list": [{"$var": "credentials.missing"}, {"$var": "credentials.zero"}, "literal"],
        "inner": {"gone": {"$var": "input.nothing"}, "here": 1},
    }
    assert ev(value) == {
        "kept": "tok-1",
        "null_is_kept": None,
        "list": [None, 0, "literal"],
        "inner": {"here": 1},
    }


def test_undefined_repr_and_falsiness() -> None:
    """UNDEFINED is falsy and shows as UNDEFINED."""
    assert not UNDEFINED
    assert repr(UNDEFINED) == "UNDEFINED"


# -- $concat and $tpl --------------------------------------------------------------------


def test_concat_list_form() -> None:
    """``$concat: [...]`` joins its members without a delimiter."""
    assert ev({"$concat": ["Bearer ", {"$var": "credentials.access_token"}]}) == "Bearer tok-1"


def test_concat_values_and_delimiter_form() -> None:
    """``$concat: {values, delimiter}`` joins with the delimiter."""
    value = {
        "$concat": {
            "values": [{"$var": "credentials.token_type"}, {"$var": "credentials.access_token"}],
            "delimiter": " ",
        }
    }
    assert ev(value) == "Bearer tok-1"
    assert ev({"$concat": {"values": ["a", "b", "c"]}}) == "abc"


def test_concat_renders_numbers_and_booleans_as_json_text() -> None:
    """Numbers and booleans are rendered as JSON-ish text: ``3``, ``2.5``, ``true``, ``false``."""
    value = {"$concat": {"values": [3, 2.5, 4.0, True, False, {"$var": "credentials.zero"}]}}
    assert ev({**value, "$concat": {**value["$concat"], "delimiter": "|"}}) == (
        "3|2.5|4|true|false|0"
    )


def test_concat_with_an_undefined_member_is_undefined() -> None:
    """One undefined member makes the concat undefined (no half-built ``Bearer ``).

    The module documents this choice (it departs from "skip undefined members"): a
    header is left out rather than sent without its token.
    """
    value = {
        "$concat": {
            "values": ["a", {"$var": "credentials.missing"}, "b"],
            "delimiter": ",",
        }
    }
    assert ev(value) is UNDEFINED
    assert ev({"Authorization": {"$concat": ["Bearer ", {"$var": "credentials.nope"}]}}) == {}


def test_concat_null_member_is_empty_text() -> None:
    """A null member (defined, unlike a missing one) renders as ``""``."""
    value = {"$concat": {"values": ["a", {"$var": "credentials.none"}, "b"], "delimiter": ","}}
    assert ev(value) == "a,,b"


def test_concat_optional_member_idiom_from_the_module_docstring() -> None:
    """The documented idiom: wrap an optional member in ``$firstNotEmpty: [..., ""]``.

    The member is then ``""`` when the variable is missing, and the concat is built.
    """
    optional = {"$firstNotEmpty": [{"$var": "credentials.missing"}, ""]}
    assert ev({"$concat": ["x", optional, "y"]}) == "xy"
    assert ev({"$concat": ["x", {"$firstNotEmpty": [{"$var": "input.status"}, ""]}]}) == "xWon"


def test_concat_of_only_undefined_members_is_undefined_and_drops_the_key() -> None:
    """All members undefined: the concat is undefined, so its mapping key is dropped."""
    value = {
        "header": {"$concat": [{"$var": "credentials.missing"}, {"$var": "credentials.other"}]},
        "kept": "yes",
    }
    assert ev(value["header"]) is UNDEFINED
    assert ev(value) == {"kept": "yes"}
    assert ev({"$concat": []}) == ""


def test_tpl_single_brace_placeholders() -> None:
    """``$tpl`` substitutes ``{name}`` placeholders from its values (single braces)."""
    value = {
        "$tpl": {
            "template": "{scheme} {token} for {client}, expires in {ttl}s",
            "values": {
                "scheme": {"$var": "credentials.token_type"},
                "token": {"$var": "credentials.access_token"},
                "client": {"$var": "$.connectorParameters.clientId"},
                "ttl": {"$var": "credentials.expires_in"},
            },
        }
    }
    assert ev(value) == "Bearer tok-1 for cid, expires in 3600s"


def test_tpl_null_renders_empty_and_other_braces_stay_literal() -> None:
    """A null value renders as ``""``; text that is no placeholder stays as it is."""
    value = {
        "$tpl": {
            "template": "[{null}] [{flag}] [{n}] {{x}} {0.__class__} {x!r}",
            "values": {"null": {"$var": "credentials.none"}, "flag": True, "n": 2.0, "x": "X"},
        }
    }
    assert ev(value) == "[] [true] [2] {X} {0.__class__} {x!r}"


def test_tpl_with_an_undefined_value_is_undefined() -> None:
    """As ``$concat``: an undefined placeholder value makes the whole template undefined."""
    value = {
        "$tpl": {
            "template": "Bearer {token}",
            "values": {"token": {"$var": "credentials.missing"}},
        }
    }
    assert ev(value) is UNDEFINED
    assert ev({"Authorization": value, "Accept": "json"}) == {"Accept": "json"}
    unused = {"$tpl": {"template": "[{x}]", "values": {"x": "X", "y": {"$var": "input.no"}}}}
    assert ev(unused) == "[X]"


def test_tpl_placeholder_without_value_is_a_spec_error() -> None:
    """A placeholder with no value is refused at compile time."""
    with pytest.raises(SpecError, match=r"\{name\}"):
        compiled({"$tpl": {"template": "Hi {name}", "values": {}}})


# -- $eval --------------------------------------------------------------------------------


def evaluate_op(subject: Any, operator: str, operand: Any) -> Any:
    return ev({"$eval": subject, operator: operand})


@pytest.mark.parametrize(
    ("subject", "operator", "operand", "expected"),
    [
        # is / isNot: strict equality (no number/string or bool/number coercion)
        ({"$var": "input.status"}, "is", "Won", True),
        ({"$var": "input.status"}, "is", "Lost", False),
        ({"$var": "input.count"}, "is", 5, True),
        ({"$var": "input.count"}, "is", 5.0, True),
        ({"$var": "input.count"}, "is", "5", False),
        ({"$var": "credentials.false"}, "is", False, True),
        ({"$var": "credentials.zero"}, "is", False, False),
        (1, "is", True, False),
        ({"$var": "credentials.missing"}, "is", None, True),
        ({"$var": "input.status"}, "isNot", "Lost", True),
        ({"$var": "input.status"}, "isNot", "Won", False),
        ({"$var": "input.count"}, "isNot", "5", True),
        # isEmpty / isNotEmpty: undefined, null, "", [], {} (operand ignored)
        ({"$var": "credentials.missing"}, "isEmpty", True, True),
        ({"$var": "credentials.none"}, "isEmpty", True, True),
        ({"$var": "credentials.empty_string"}, "isEmpty", True, True),
        ([], "isEmpty", True, True),
        ({"$plain": {}}, "isEmpty", True, True),
        ({"$var": "credentials.zero"}, "isEmpty", True, False),
        ({"$var": "credentials.false"}, "isEmpty", True, False),
        ({"$var": "input.status"}, "isEmpty", True, False),
        ({"$var": "input.status"}, "isNotEmpty", True, True),
        ({"$var": "credentials.zero"}, "isNotEmpty", True, True),
        ({"$var": "credentials.missing"}, "isNotEmpty", True, False),
        ({"$var": "credentials.empty_string"}, "isNotEmpty", False, False),
        # contains / doesNotContain: substring for strings, membership for lists
        ({"$var": "input.title"}, "contains", "lo wo", True),
        ({"$var": "input.title"}, "contains", "bye", False),
        ({"$var": "input.tags"}, "contains", "b", True),
        ({"$var": "input.tags"}, "contains", "c", False),
        ({"$var": "input.tags"}, "contains", "a,b", False),
        ({"$var": "input.count"}, "contains", 5, False),
        ({"$var": "credentials.missing"}, "contains", "x", False),
        ({"$var": "input.title"}, "doesNotContain", "bye", True),
        ({"$var": "input.title"}, "doesNotContain", "hello", False),
        ({"$var": "input.tags"}, "doesNotContain", "c", True),
        ({"$var": "input.tags"}, "doesNotContain", "a", False),
        # oneOf / noneOf
        ({"$var": "input.status"}, "oneOf", ["Won", "Lost"], True),
        ({"$var": "input.status"}, "oneOf", ["Open"], False),
        ({"$var": "input.count"}, "oneOf", ["5", 6], False),
        ({"$var": "input.status"}, "noneOf", ["Open", "Lost"], True),
        ({"$var": "input.status"}, "noneOf", ["Won"], False),
        # gt / gte / lt / lte: numbers, numeric strings count, anything else is false
        ({"$var": "input.count"}, "gt", 4, True),
        ({"$var": "input.count"}, "gt", 5, False),
        ({"$var": "input.count"}, "gte", 5, True),
        ({"$var": "input.count"}, "gte", 6, False),
        ({"$var": "input.count"}, "lt", 6, True),
        ({"$var": "input.count"}, "lt", 5, False),
        ({"$var": "input.count"}, "lte", 5, True),
        ({"$var": "input.count"}, "lte", 4.5, False),
        ("10", "gt", 9, True),
        ("10", "lt", "9", False),
        ("2.5", "lte", 2.5, True),
        (7, "gte", "7", True),
        ("1e3", "gt", 999, True),
        ("abc", "gt", 1, False),
        # JavaScript-like: booleans, "inf", "nan" and "1_000" are not numbers here
        (True, "gt", 0, False),
        ("inf", "gt", 1, False),
        ("nan", "lt", 1, False),
        ("1_000", "gt", 1, False),
        (" 2.5 ", "lt", 3, True),
        ("abc", "lt", 1, False),
        (1, "lte", "abc", False),
        ({"$var": "credentials.missing"}, "lt", 1, False),
        ({"$var": "credentials.none"}, "gte", 0, False),
        ({"$var": "input.tags"}, "gt", 0, False),
        ({"$plain": {}}, "lte", 0, False),
    ],
)
def test_eval_operators(subject: Any, operator: str, operand: Any, expected: bool) -> None:
    """``$eval`` with each documented operator returns exactly True or False."""
    assert evaluate_op(subject, operator, operand) is expected


def test_eval_operand_can_be_a_formula() -> None:
    """The operand is evaluated too."""
    value = {"$eval": {"$var": "input.status"}, "is": {"$concat": ["W", "on"]}}
    assert ev(value) is True


@pytest.mark.parametrize(
    "value",
    [
        {"$eval": 1},
        {"$eval": 1, "is": 1, "isNot": 2},
        {"$eval": 1, "in": [1]},
        {"$eval": 1, "oneOf": 1},
    ],
)
def test_eval_shape_errors(value: dict[str, Any]) -> None:
    """``$eval`` needs exactly one known operator (there is no ``in``); oneOf takes a list."""
    with pytest.raises(SpecError, match=r"\$eval"):
        compiled(value)


# -- $and / $or ---------------------------------------------------------------------------


def test_and_or() -> None:
    """``$and`` / ``$or`` combine formulas and values into a boolean."""
    won = {"$eval": {"$var": "input.status"}, "is": "Won"}
    lost = {"$eval": {"$var": "input.status"}, "is": "Lost"}
    assert ev({"$and": [won, {"$var": "input.count"}]}) is True
    assert ev({"$and": [won, lost]}) is False
    assert ev({"$and": [won, {"$var": "credentials.missing"}]}) is False
    assert ev({"$or": [lost, won]}) is True
    assert ev({"$or": [lost, {"$var": "credentials.missing"}]}) is False
    assert ev({"$or": [lost, {"$and": [won, True]}]}) is True


# -- $case --------------------------------------------------------------------------------


def case_formula(default: Any = None, *, with_default: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "cases": [
            {
                "filter": [
                    {"field": "input.status", "operator": "is", "value": "Won"},
                    {"field": "input.count", "operator": "gt", "value": 3},
                ],
                "value": "big win",
            },
            {
                "filter": [{"field": "$.input.status", "operator": "oneOf", "value": ["Won"]}],
                "value": {"$concat": ["small ", {"$var": "input.status"}]},
            },
        ]
    }
    if with_default:
        body["default"] = default
    return {"$case": body}


def test_case_first_matching_case_wins() -> None:
    """``$case``: every condition of a case's filter must match; the first match wins."""
    assert ev(case_formula("other")) == "big win"
    scope = {**SCOPE, "input": {**SCOPE["input"], "count": 1}}
    assert ev(case_formula("other"), scope) == "small Won"


def test_case_no_match_gives_default_or_undefined() -> None:
    """No case matches: ``default``, or undefined (key dropped) without a default."""
    scope = {**SCOPE, "input": {"status": "Open", "count": 9}}
    assert ev(case_formula({"$var": "connectorParameters.region"}), scope) == "eu"
    assert ev(case_formula(with_default=False), scope) is UNDEFINED
    assert ev({"label": case_formula(with_default=False), "x": 1}, scope) == {"x": 1}


def test_case_without_filter_is_the_else_branch() -> None:
    """A case without ``filter`` always matches (an "else"), before ``default``."""
    value = {
        "$case": {
            "cases": [
                {"filter": [{"field": "input.status", "value": "Lost"}], "value": "lost"},
                {"value": "not lost"},
            ],
            "default": "never",
        }
    }
    assert ev(value) == "not lost"
    assert ev({"$case": {"cases": [{"filter": [], "value": "empty filter"}]}}) == "empty filter"


def test_case_bare_list_form() -> None:
    """The older form, a bare list of ``{filter, value}``, works (no default)."""
    value = {
        "$case": [
            {
                "filter": [{"field": "input.status", "operator": "is", "value": "Lost"}],
                "value": 1,
            },
            {
                "filter": [{"field": "input.tags", "operator": "contains", "value": "b"}],
                "value": 2,
            },
        ]
    }
    assert ev(value) == 2
    assert ev(value, {**SCOPE, "input": {"tags": []}}) is UNDEFINED


def test_case_filter_operator_defaults_to_is() -> None:
    """A condition without ``operator`` compares with ``is``."""
    value = {"$case": [{"filter": [{"field": "input.count", "value": 5}], "value": "five"}]}
    assert ev(value) == "five"


# -- $firstNotEmpty, $map, $plain ------------------------------------------------------


def test_first_not_empty_skips_none_empty_string_list_and_mapping() -> None:
    """``$firstNotEmpty`` returns the first member that is not undefined/None/""/[]/{}."""
    value = {
        "$firstNotEmpty": [
            {"$var": "credentials.missing"},
            {"$var": "credentials.none"},
            {"$var": "credentials.empty_string"},
            [],
            {"$plain": {}},
            {"$var": "credentials.access_token"},
            "later",
        ]
    }
    assert ev(value) == "tok-1"
    assert ev({"$firstNotEmpty": [None, "", {"$var": "credentials.zero"}, 1]}) == 0
    assert ev({"$firstNotEmpty": [None, {"$var": "credentials.false"}]}) is False
    assert ev({"$firstNotEmpty": [None, "", {"$var": "credentials.missing"}]}) is UNDEFINED
    assert ev({"k": {"$firstNotEmpty": [{"$var": "credentials.missing"}]}}) == {}


def test_map() -> None:
    """``$map`` translates a value through ``mapping: [{from, to}]``, else ``default``."""
    table = [{"from": "eu", "to": "https://eu.example"}, {"from": "us", "to": "https://us.ex"}]
    value = {"$map": {"value": {"$var": "connectorParameters.region"}, "mapping": table}}
    assert ev(value) == "https://eu.example"
    other = {**SCOPE, "connectorParameters": {"region": "ap"}}
    assert ev(value, other) is UNDEFINED
    with_default = {"$map": {**value["$map"], "default": "https://default.example"}}
    assert ev(with_default, other) == "https://default.example"
    spelled = {"$map": {"value": 5, "mappings": [{"from": "5", "to": "s"}, {"from": 5, "to": "n"}]}}
    assert ev(spelled) == "n"


def test_plain_returns_its_content_unevaluated() -> None:
    """``$plain`` gives its content as data: formulas inside are not evaluated."""
    assert ev({"$plain": {"$var": "x"}}) == {"$var": "x"}
    inner = {"$concat": ["a", {"$var": "credentials.access_token"}], "list": [{"$eval": 1}]}
    result = ev({"wrapped": {"$plain": inner}})
    assert result == {"wrapped": inner}
    result["wrapped"]["list"].append("mutated")  # a copy: the next evaluation is unchanged
    assert ev({"$plain": inner}) == inner


def test_plain_content_is_not_compiled() -> None:
    """Unknown formulas and unknown variables inside ``$plain`` are not errors."""
    value = {"$plain": {"$lookup": {"query": 1}, "x": {"$var": "nowhere.at.all"}}}
    assert ev(value) == {"$lookup": {"query": 1}, "x": {"$var": "nowhere.at.all"}}


# -- nesting, safety, compile results ----------------------------------------------------


def test_nested_formulas() -> None:
    """Formulas nest in each other and in plain mappings and lists."""
    value = {
        "baseUri": {
            "$concat": [
                {
                    "$firstNotEmpty": [
                        {"$var": "connectorParameters.baseUri"},
                        {
                            "$map": {
                                "value": {"$var": "connectorParameters.region"},
                                "mapping": [{"from": "eu", "to": "https://eu.api.example"}],
                            }
                        },
                    ]
                },
                "/v1",
            ]
        },
        "headers": {
            "Authorization": {
                "$tpl": {
                    "template": "{t} {v}",
                    "values": {
                        "t": {
                            "$case": {
                                "cases": [
                                    {
                                        "filter": [
                                            {
                                                "field": "credentials.token_type",
                                                "operator": "isNotEmpty",
                                            }
                                        ],
                                        "value": {"$var": "credentials.token_type"},
                                    }
                                ],
                                "default": "Bearer",
                            }
                        },
                        "v": {"$var": "credentials.access_token"},
                    },
                }
            },
            "X-Flags": [{"$and": [True, {"$var": "input.count"}]}, {"$var": "input.nothing"}],
        },
    }
    assert ev(value) == {
        "baseUri": "https://eu.api.example/v1",
        "headers": {"Authorization": "Bearer tok-1", "X-Flags": [True, None]},
    }


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('echo pwned')",
        "{{ 7*7 }}",
        "${credentials.access_token}",
        "$var",
        "lambda: 1",
    ],
)
def test_strings_are_data_not_code(text: str) -> None:
    """Strings that look like code or templates are returned as they are."""
    assert ev(text) == text
    assert ev({"h": text}) == {"h": text}
    assert ev({"$concat": [text, "!"]}) == f"{text}!"


@pytest.mark.parametrize(
    "locator",
    [
        "credentials.__class__",
        "credentials.__class__.__mro__",
        "credentials.items",
        "credentials.keys",
        "credentials.access_token.__len__",
        "credentials.access_token.upper",
        "credentials.list.__getitem__",
        "input.__dict__",
    ],
)
def test_var_never_reads_python_attributes(locator: str) -> None:
    """``$var`` looks keys up in mappings only: attribute-like paths are UNDEFINED."""
    assert ev({"$var": locator}) is UNDEFINED


class _Tripwire(dict):  # type: ignore[type-arg]
    """A mapping whose attributes must never be touched by a formula."""

    def __getattr__(self, name: str) -> Any:  # pragma: no cover - fails the test if called
        raise AssertionError(f"attribute {name!r} was read")


def test_var_does_not_fall_back_to_getattr() -> None:
    """Even on a mapping with attributes, a missing key is UNDEFINED, not an attribute."""
    scope = {"credentials": _Tripwire(token="t")}
    assert ev({"$var": "credentials.token"}, scope) == "t"
    assert ev({"$var": "credentials.secret_attribute"}, scope) is UNDEFINED


def test_compiled_roots_paths_and_constant() -> None:
    """``roots`` are the variables read, ``paths`` every ``$var``/filter path, split."""
    value = {
        "a": {"$var": "$.credentials.access_token"},
        "b": {"$concat": [{"$var": "connectorParameters.region"}, "x"]},
        "c": {"$var": "credentials.list[1].name"},
        "d": {"$case": [{"filter": [{"field": "credentials.a\\.b", "value": 1}], "value": 2}]},
        "e": {"$plain": {"$var": "input.status"}},
    }
    result = compiled(value)
    assert result.roots == frozenset({"credentials", "connectorParameters"})
    assert result.paths == frozenset(
        {
            ("credentials", "access_token"),
            ("connectorParameters", "region"),
            ("credentials", "list", 1, "name"),
            ("credentials", "a.b"),
        }
    )
    assert result.constant is False


@pytest.mark.parametrize(
    "value", ["text", 3, None, True, ["a", {"b": [1, 2]}], {"k": {"nested": "v"}}]
)
def test_literal_is_constant(value: Any) -> None:
    """A tree without formulas is constant, reads nothing and evaluates to itself."""
    result = compiled(value)
    assert result.constant is True
    assert result.roots == frozenset()
    assert result.paths == frozenset()
    assert result.evaluate({}) == value


def test_plain_is_not_constant_but_reads_nothing() -> None:
    """``$plain`` is a formula (not constant) whose content is not a read."""
    result = compiled({"$plain": {"$var": "credentials.x"}})
    assert result.constant is False
    assert result.roots == frozenset()
    assert result.paths == frozenset()


# -- errors and YAML ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"$lookup": {"query": 1}}, r"needs the Integration\.app platform"),
        ({"$eval_js": "1"}, r"unknown formula \$eval_js"),
        ({"$var": "secrets.x"}, r"starts with 'secrets', which is not a variable here"),
        ({"$var": "credentials..x"}, r"not a valid locator"),
        ({"$var": 3}, r"takes a path string"),
        ({"$var": "credentials.x", "other": 1}, r"takes no sibling keys"),
        ({"$concat": "ab"}, r"\$concat takes a list"),
        ({"$firstNotEmpty": "ab"}, r"\$firstNotEmpty takes a list"),
        ({"$and": []}, r"\$and takes a non-empty list"),
    ],
)
def test_compile_errors(value: Any, message: str) -> None:
    """Malformed formulas are SpecErrors at compile time, naming the file."""
    with pytest.raises(SpecError, match=message) as caught:
        compiled({"field": value})
    assert caught.value.file == "f.yml"
    assert caught.value.key is not None
    assert caught.value.key.startswith("field")


def test_formulas_from_yaml(tmp_path: Path) -> None:
    """Formulas written in YAML (escaped dots, $. prefix, anchors) compile and evaluate."""
    path = tmp_path / "f.yml"
    path.write_text(
        "token: &tok {$var: $.credentials.access_token}\n"
        "again: *tok\n"
        "dotted: {$var: 'credentials.a\\.b'}\n"
        "auth:\n"
        "  $concat:\n"
        "    values: [{$var: credentials.token_type}, {$var: credentials.access_token}]\n"
        "    delimiter: ' '\n"
        "gone: {$var: credentials.missing}\n"
        "plain: {$plain: {$var: x}}\n"
        "bad: {$var: nowhere.x}\n",
        encoding="utf-8",
    )
    document = load_yaml(path, display="f.yml")
    data = dict(document.data)
    bad = data.pop("bad")
    result = compile_value(data, document, (), roots=ROOTS)
    assert result.evaluate(SCOPE) == {
        "token": "tok-1",
        "again": "tok-1",
        "dotted": "dotted-key",
        "auth": "Bearer tok-1",
        "plain": {"$var": "x"},
    }
    with pytest.raises(SpecError) as caught:
        compile_value(bad, document, ("bad",), roots=ROOTS)
    assert (caught.value.file, caught.value.line, caught.value.key) == ("f.yml", 10, "bad.$var")
