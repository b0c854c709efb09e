"""Reading one EPCIS 2.0 document, and validating it against a JSON schema: JSON
text in (with duplicate keys and non-JSON constants reported, not silently
resolved), a parsed document or a list of :class:`Problem` out, each problem at
the JSON path it concerns (``epcisBody.eventList[2].childEPCs[1]``).

The reading half of :func:`scangate.epcis.parse_document`; what the events mean
is :mod:`scangate._epcis_events`. Public through :mod:`scangate.epcis`. Nothing
raises on bad input. No I/O except :func:`load_schema`, which reads the schema
file it is given; jsonschema is imported only when a schema is used.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:  # pragma: no cover
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

__all__ = ["Problem", "load_schema", "schema_problems"]


@dataclass(frozen=True)
class Problem:
    path: str  # JSON path, e.g. "epcisBody.eventList[2].childEPCs[1]"; "$" = the document
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# --------------------------------------------------------------------------- paths

_Path = tuple[Union[str, int], ...]
_PLAIN_KEY = re.compile(r"[A-Za-z_@$][A-Za-z0-9_@$-]*")


def _render(path: _Path | Any) -> str:
    """("epcisBody", "eventList", 2, "childEPCs", 1) -> 'epcisBody.eventList[2].childEPCs[1]'."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _PLAIN_KEY.fullmatch(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{json.dumps(part)}]")
    return "".join(out) or "$"


def _show(value: Any, limit: int = 120) -> str:
    """A value for a message: strings as they are, other things as JSON; cut when long."""
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    # a lone surrogate (from a JSON \\udc80 escape) as its escape: messages go to
    # UTF-8 output, which cannot carry one
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --------------------------------------------------------------------------- schema


def load_schema(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON schema file and check it against its own metaschema.

    Raises OSError, ValueError (not JSON, or an unsupported ``$schema``) or
    ``jsonschema.SchemaError``.
    """
    with open(path, "rb") as fh:
        schema = json.loads(fh.read().decode("utf-8-sig"))
    if not isinstance(schema, dict):
        raise ValueError(f"{os.fspath(path)}: a JSON schema must be an object")
    _validator_class(schema).check_schema(schema)
    return schema


def _validator_class(schema: dict[str, Any]) -> type[Validator]:
    """The Draft validator named by ``$schema`` (Draft 2020-12 when there is none)."""
    import jsonschema

    classes: tuple[type[Validator], ...] = (
        jsonschema.Draft202012Validator,
        jsonschema.Draft201909Validator,
        jsonschema.Draft7Validator,
        jsonschema.Draft6Validator,
        jsonschema.Draft4Validator,
        jsonschema.Draft3Validator,
    )
    declared = schema.get("$schema")
    if declared is None:
        return jsonschema.Draft202012Validator
    if not isinstance(declared, str):
        raise ValueError(f"$schema must be a string, not {_json_kind(declared)}")
    for cls in classes:
        if str(cls.META_SCHEMA["$schema"]).rstrip("#") == declared.rstrip("#"):
            return cls
    raise ValueError(f"unsupported $schema {declared!r}")


def _refuse_remote(uri: str) -> Any:
    # Validation is offline: a $ref to anything outside the schema itself (and the
    # JSON Schema metaschemas, which jsonschema bundles) cannot be resolved.
    raise LookupError(f"{uri} is not available offline")


def _schema_error_problem(error: ValidationError) -> Problem:
    path = _render(tuple(error.absolute_path))
    if error.validator in ("anyOf", "oneOf") and error.context:
        from jsonschema.exceptions import best_match

        closest = best_match(error.context)
        where = _render(tuple(closest.absolute_path))
        at = "" if where == path else f" at {where}"
        message = (f"schema: matches none of the allowed forms ({error.validator}); "
                   f"closest: {_show(closest.message, 300)}{at}")
    else:
        message = f"schema: {_show(error.message, 300)}"
    return Problem(path, message)


def schema_problems(doc: Any, schema: dict[str, Any]) -> list[Problem]:
    """Validate a parsed document against ``schema``; one Problem per error.

    Offline: a ``$ref`` outside the schema (other than the standard metaschemas) is
    reported as a Problem at ``$`` (the document then fails: it could not be checked).
    """
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    cls = _validator_class(schema)
    validator = cls(schema, registry=Registry(retrieve=_refuse_remote))  # type: ignore[call-arg]  # attrs alias
    try:
        errors = list(validator.iter_errors(doc))
    except Unresolvable as exc:
        return [Problem("$", f"schema validation could not run: {exc}; the schema refers to a "
                             "resource that is not available offline (inline or bundle it)")]
    except RecursionError:
        return [Problem("$", "schema validation could not run: the document is nested too deeply")]
    # Sorted by path (a parent before its members), not in the schema's order.
    errors.sort(key=lambda e: [(0, k, "") if isinstance(k, int) else (1, 0, k) for k in e.absolute_path])
    out: list[Problem] = []
    for error in errors:
        problem = _schema_error_problem(error)
        if problem not in out:
            out.append(problem)
    return out


# --------------------------------------------------------------------------- JSON text


class _Reject(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _Reject(f"{name} is not JSON")


def _load(data: bytes | str | dict[str, Any], problems: list[Problem]) -> tuple[bool, Any]:
    if isinstance(data, dict):
        return True, data
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            problems.append(Problem("$", f"not UTF-8 text: byte {exc.start} cannot be decoded"))
            return False, None
    elif isinstance(data, str):
        text = data
    else:
        raise TypeError(f"parse_document takes bytes, str or dict, not {type(data).__name__}")

    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                duplicates.append(key)
            obj[key] = value
        return obj

    try:
        doc = json.loads(text, object_pairs_hook=pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        problems.append(Problem("$", f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"))
        return False, None
    except _Reject as exc:
        problems.append(Problem("$", f"malformed JSON: {exc}"))
        return False, None
    except RecursionError:
        problems.append(Problem("$", "malformed JSON: nested too deeply"))
        return False, None
    for key in dict.fromkeys(duplicates):
        problems.append(Problem("$", f"duplicate key {key!r} in a JSON object: readers disagree "
                                     "on which value counts"))
    return True, doc
