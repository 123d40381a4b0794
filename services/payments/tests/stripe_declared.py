"""What the installed `stripe` package declares, read at run time: the parameter TypedDicts of
each call (`stripe.params...`) and the fields of each resource class. The stand-in checks every
request and every object it answers against them, so upgrading `stripe` to a version that
removes or renames a parameter we send breaks the card tests before it breaks production.

A request arrives form-encoded (`line_items[0][price_data][currency]=eur`, booleans as
`true`/`false`, numbers as digits); `check_params` walks it against the declared type
recursively (nested TypedDicts, List, Dict, Literal, Union, Required/NotRequired) and returns the
values with their declared Python types, or raises `ParamError` naming the parameter as Stripe
does (`line_items[0][quantity]`).

One deliberate strictness: the library declares enums as `Literal[...] | str` so that an older
library keeps working when the API adds a value; the API itself refuses a value it does not know,
so here a string must be one of the literals when the union has any."""

from __future__ import annotations

import importlib
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

import stripe
import typing_extensions
from stripe._request_options import RequestOptions
from stripe._stripe_object import StripeObject, UntypedStripeObject

_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# RequestOptions are the library's own per-request options (key, account, idempotency key):
# the params TypedDicts inherit them for the legacy `Resource.create(**params)` style, but they
# are sent as headers, never as parameters.
_OPTIONS = frozenset(RequestOptions.__annotations__)


@dataclass
class ParamError(Exception):
    param: str
    message: str
    code: str = "parameter_invalid"

    def __str__(self) -> str:
        return f"{self.param}: {self.message}"


@cache
def declared_params(params_class: type) -> tuple[dict[str, Any], frozenset[str]]:
    """(field -> declared type, required fields) of a params TypedDict, without RequestOptions."""
    options_module = sys.modules[RequestOptions.__module__]
    # RequestOptions' own annotations name types its module imports (and one only under
    # TYPE_CHECKING): give them so its inherited fields evaluate, then leave those fields out.
    localns = {**vars(options_module), "StripeContext": object}
    hints = typing.get_type_hints(params_class, localns=localns, include_extras=True)
    required = frozenset(getattr(params_class, "__required_keys__", frozenset())) - _OPTIONS
    return {name: hint for name, hint in hints.items() if name not in _OPTIONS}, required


def _key(path: str, name: str) -> str:
    return f"{path}[{name}]" if path else name


def _unwrap(hint: Any) -> Any:
    while typing.get_origin(hint) in (typing_extensions.NotRequired, typing_extensions.Required):
        hint = typing.get_args(hint)[0]
    return hint


def _is_typeddict(hint: Any) -> bool:
    return isinstance(hint, type) and typing_extensions.is_typeddict(hint)


def _literals(options: tuple[Any, ...]) -> list[Any]:
    found: list[Any] = []
    for option in options:
        if typing.get_origin(option) is typing.Literal:
            found.extend(typing.get_args(option))
    return found


def check_value(value: Any, hint: Any, path: str) -> Any:
    """`value` as sent (a string, or a dict of them for a nested parameter) checked against
    `hint`; returns it with its declared type."""
    hint = _unwrap(hint)
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        literals = _literals(options)
        if literals and isinstance(value, str) and str in options:
            options = tuple(o for o in options if o is not str)  # the API's enum, not the library's leniency
        errors: list[ParamError] = []
        for option in options:
            try:
                return check_value(value, option, path)
            except ParamError as exc:
                errors.append(exc)
        if literals and isinstance(value, str):
            allowed = ", ".join(repr(v) for v in literals)
            raise ParamError(path, f"Invalid {path}: must be one of {allowed}")
        raise errors[-1] if errors else ParamError(path, f"Invalid {path}")
    if origin is typing.Literal:
        allowed_values = typing.get_args(hint)
        for allowed in allowed_values:
            if isinstance(value, str) and value == _wire(allowed):
                return allowed
        raise ParamError(path, f"Invalid {path}: must be one of {', '.join(repr(v) for v in allowed_values)}")
    if _is_typeddict(hint):
        return check_object(value, hint, path)
    if origin in (list, typing.List) or hint in (list, typing.List):  # noqa: UP006 - the library's own spelling
        (item,) = typing.get_args(hint) or (Any,)
        return _check_list(value, item, path)
    if origin in (dict, typing.Dict, Mapping, UntypedStripeObject) or (  # noqa: UP006
        isinstance(origin, type) and issubclass(origin, StripeObject)
    ):
        args = typing.get_args(hint)
        item = args[-1] if args else Any
        if not isinstance(value, dict):
            raise ParamError(path, f"Invalid object: {path} must be a hash")
        return {name: check_value(inner, item, _key(path, name)) for name, inner in value.items()}
    if isinstance(value, dict):
        raise ParamError(path, f"Invalid {path}: a {getattr(hint, '__name__', hint)} was expected, not a hash")
    if hint is str:
        return value
    if hint is bool:
        if value not in ("true", "false"):
            raise ParamError(path, f"Invalid boolean: {value}")
        return value == "true"
    if hint is int:
        if not _INTEGER.fullmatch(value):
            raise ParamError(path, f"Invalid integer: {value}")
        return int(value)
    if hint in (float, Decimal):
        if not _NUMBER.fullmatch(value):
            raise ParamError(path, f"Invalid decimal: {value}")
        try:
            return Decimal(value) if hint is Decimal else float(value)
        except InvalidOperation:
            raise ParamError(path, f"Invalid decimal: {value}") from None
    if hint is type(None):
        raise ParamError(path, f"Invalid {path}: null is never sent")
    raise ParamError(path, f"the stand-in cannot check a parameter declared as {hint!r}")


def _wire(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _check_list(value: Any, item: Any, path: str) -> list[Any]:
    if not isinstance(value, dict) or not all(_INTEGER.fullmatch(k) for k in value):
        raise ParamError(path, f"Invalid array: {path} must be an array")
    indexes = sorted(int(k) for k in value)
    if indexes != list(range(len(indexes))):
        raise ParamError(path, f"Invalid array: {path} has gaps in its indexes")
    return [check_value(value[str(i)], item, f"{path}[{i}]") for i in indexes]


def check_object(value: Any, params_class: type, path: str = "") -> dict[str, Any]:
    """A (nested) parameters hash against its TypedDict: no unknown field, every required one."""
    if not isinstance(value, dict):
        raise ParamError(path, f"Invalid object: {path} must be a hash")
    fields, required = declared_params(params_class)
    for name in value:
        if name not in fields:
            raise ParamError(_key(path, name), f"Received unknown parameter: {_key(path, name)}", "parameter_unknown")
    for name in sorted(required):
        if name not in value:
            raise ParamError(_key(path, name), f"Missing required param: {_key(path, name)}.", "parameter_missing")
    return {name: check_value(inner, fields[name], _key(path, name)) for name, inner in value.items()}


def check_params(params: dict[str, Any], params_class: type) -> dict[str, Any]:
    """The whole request's parameters (as parsed by `parse_form`) against the call's TypedDict."""
    return check_object(params, params_class)


# -- responses --------------------------------------------------------------------------------

RESOURCES: dict[str, type[StripeObject]] = {
    cls.OBJECT_NAME: cls
    for cls in (
        stripe.checkout.Session,
        stripe.PaymentIntent,
        stripe.Charge,
        stripe.Refund,
        stripe.BalanceTransaction,
        stripe.Account,
        stripe.AccountLink,
        stripe.Dispute,
        stripe.Event,
        stripe.Customer,  # only as an event we do not handle
        stripe.Application,  # account.application.deauthorized
    )
}
RESOURCES["list"] = stripe.ListObject


@cache
def declared_fields(resource: type) -> frozenset[str]:
    """The public fields a resource class declares (its annotations, through its bases)."""
    names: set[str] = set()
    for klass in resource.__mro__:
        names.update(n for n in getattr(klass, "__annotations__", {}) if not n.startswith("_"))
    return frozenset(names - {"OBJECT_NAME"})


def check_response(obj: Any, where: str = "") -> None:
    """Every object (`"object": ...`) in an answer has only fields its resource class declares,
    recursively; an object type the stand-in does not know is an error too."""
    if isinstance(obj, list):
        for index, item in enumerate(obj):
            check_response(item, f"{where}[{index}]")
        return
    if not isinstance(obj, dict):
        return
    kind = obj.get("object")
    if isinstance(kind, str):
        resource = RESOURCES.get(kind)
        if resource is None:
            raise AssertionError(f"{where or 'answer'}: object {kind!r} has no resource class known to the stand-in")
        extra = set(obj) - declared_fields(resource) - {"object"}  # the discriminator itself
        if extra:
            raise AssertionError(
                f"{where or kind}: fields {sorted(extra)} are not declared by {resource.__qualname__} "
                f"in stripe {stripe.VERSION}"
            )
    for name, inner in obj.items():
        check_response(inner, f"{where}.{name}" if where else name)


def params_of(call: Any) -> type:
    """The params TypedDict a `StripeClient` service method declares (`params: X | None`), looked
    up in `stripe.params` by the name the method's annotation gives."""
    annotation = call.__annotations__["params"]
    if not isinstance(annotation, str):
        forward = next(a for a in typing.get_args(annotation) if a is not type(None))
        annotation = forward.__forward_arg__ if isinstance(forward, typing.ForwardRef) else forward.__name__
    # stripe.checkout._session_service -> stripe.params.checkout
    namespace = call.__module__.split(".")[1:-1]
    package = importlib.import_module(".".join(["stripe", "params", *namespace]))
    found: type = getattr(package, annotation)
    return found
