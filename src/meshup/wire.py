"""Wire models: strict pydantic models that parse request bodies, render documents and describe both
in ``/openapi.json``; and the one translation of a validation error into a precise 400 message
(``"<field.path>: <what is wrong>"``, asm-api.md §2).

Request models are strict (``1`` is not ``true``, ``"1"`` is not a number) and say in their
schema what the parser enforces: lengths, patterns, list sizes, closed objects where unknown
fields are refused. Checks a JSON schema cannot state (a key given twice, a version the catalogue
does not support) run after validation, in the resource's ``schemas`` module.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, TypeGuard, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from pydantic_core import ErrorDetails

from meshup.errors import InvalidRequest, shown

M = TypeVar("M", bound=BaseModel)

NO_NUL = r"^[^\x00]*$"
NUL_MESSAGE = "must not contain NUL characters"

# pattern -> what to say when a value does not match it (besides containing a NUL character)
_PATTERN_MESSAGES: dict[str, str] = {NO_NUL: NUL_MESSAGE}


class RequestModel(BaseModel):
    """A part of a request body: strict types; unknown fields are ignored (and allowed)."""

    model_config = ConfigDict(strict=True, extra="ignore")


class ClosedModel(BaseModel):
    """A part of a request body where an unknown field is refused; ``unknown_field`` says why."""

    model_config = ConfigDict(strict=True, extra="forbid")
    unknown_field: ClassVar[str] = "unknown field"


class DocumentModel(BaseModel):
    """A part of a response document (built from domain objects, never from input)."""

    model_config = ConfigDict(extra="forbid")


def explain(pattern: str, message: str) -> str:
    """Register what a 400 says when a value does not match ``pattern``; returns the pattern."""
    _PATTERN_MESSAGES[pattern] = message
    return pattern


def validate(model: type[M], body: Any) -> M:
    """``body`` as ``model``, or InvalidRequest naming the first field that is wrong."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        error = errors[0]
        # An unknown field is named before what is wrong inside the object that holds it.
        for unknown in errors:
            if (
                unknown["type"] == "extra_forbidden"
                and error["loc"][: len(unknown["loc"]) - 1] == unknown["loc"][:-1]
            ):
                error = unknown
                break
        raise InvalidRequest(f"{path_of(error['loc'])}: {_message(model, error)}") from None


def construct(model: type[M], data: Mapping[str, Any]) -> M:
    """``model`` from data the server itself holds, without validating it again: a stored value
    the request rules have since tightened must still render (never a 500)."""
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if name in data:
            values[name] = _construct_value(field.annotation, data[name])
    return model.model_construct(**values)


def _construct_value(annotation: Any, value: Any) -> Any:
    if value is None or isinstance(value, BaseModel):
        return value
    current = _strip(annotation)
    if _is_model(current) and isinstance(value, Mapping):
        return construct(current, value)
    args = get_args(current)
    item = _strip(args[0]) if get_origin(current) is list and args else None
    if _is_model(item) and isinstance(value, list):
        return [construct(item, v) if isinstance(v, Mapping) else v for v in value]
    return value


def path_of(loc: Sequence[int | str]) -> str:
    """``("spec", "tags", 0, "key")`` → ``spec.tags[0].key``; keys that come from input are cut short."""
    out = ""
    for index, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " key"  # the key itself came before: "metadata.labels key: …"
        elif index + 1 < len(loc) and loc[index + 1] == "[key]":
            continue
        else:
            out += ("." if out else "") + shown(part)
    return out or "body"


def _message(model: type[BaseModel], error: ErrorDetails) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    if kind == "missing" or value is None:  # null is accepted wherever a field is optional
        return "required"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be an object"
    if kind in ("string_type", "string_too_short"):
        return "must be a non-empty string" if _may_not_be_empty(model, error["loc"]) else "must be a string"
    if kind == "string_too_long":
        return f"at most {ctx['max_length']} characters"
    if kind == "string_pattern_mismatch":
        if isinstance(value, str) and "\x00" in value:
            return NUL_MESSAGE
        return _PATTERN_MESSAGES.get(str(ctx.get("pattern")), "has an invalid form")
    if kind == "bool_type":
        return "must be true or false"
    if kind == "literal_error":
        return f"must be {_choices(ctx)}"
    if kind == "enum":
        return f"must be one of {_choices(ctx)}"
    if kind == "list_type":
        return "must be a list"
    if kind == "too_short":
        return (
            f"at least {ctx.get('min_length')} {'item' if ctx.get('min_length') == 1 else 'items'} required"
        )
    if kind == "too_long":
        noun = "entries" if ctx.get("field_type") == "Dictionary" else "items"
        return f"at most {ctx.get('max_length')} {noun}"
    if kind == "extra_forbidden":
        owner = _model_at(model, error["loc"][:-1])
        return (
            owner.unknown_field if owner is not None and issubclass(owner, ClosedModel) else "unknown field"
        )
    return str(error.get("msg", "invalid"))


def _choices(ctx: dict[str, Any]) -> str:
    return str(ctx.get("expected", "")).replace("'", "")


def _may_not_be_empty(model: type[BaseModel], loc: Sequence[int | str]) -> bool:
    """Whether the string at ``loc`` has a minimum length (a tag value, a label may be "")."""
    annotation, extra = _annotation_at(model, loc)
    for constraint in [*extra, *_metadata(annotation)]:
        if isinstance(constraint, StringConstraints):
            return (constraint.min_length or 0) > 0
    return True


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class of the object at ``loc`` (None when that is no model)."""
    found = _strip(_annotation_at(model, loc)[0])
    return found if _is_model(found) else None


def _annotation_at(model: type[BaseModel], loc: Sequence[int | str]) -> tuple[Any, list[Any]]:
    """The declared type of the value at ``loc``, and the field's constraints pydantic keeps apart."""
    annotation: Any = model
    extra: list[Any] = []
    for part in loc:
        current = _strip(annotation)
        extra = []
        if _is_model(current):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None, []
            annotation, extra = field.annotation, list(field.metadata)
            continue
        args = get_args(current)
        if get_origin(current) is list and args:
            annotation = args[0]
        elif get_origin(current) is dict and len(args) == 2:
            annotation = args[1]
        else:
            return None, []
    return annotation, extra


def _strip(annotation: Any) -> Any:
    """``X`` of ``X | None`` and of ``Annotated[X, …]``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _metadata(annotation: Any) -> list[Any]:
    found: list[Any] = []
    while annotation is not None:
        origin = get_origin(annotation)
        if origin is Annotated:
            found.extend(getattr(annotation, "__metadata__", ()))
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [arg for arg in get_args(annotation) if arg is not type(None)]
            annotation = options[0] if len(options) == 1 else None
        else:
            break
    return found


def _is_model(value: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(value, type) and issubclass(value, BaseModel)
