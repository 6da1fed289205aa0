"""Marshmallow schemas: what comes in (with the original's messages, §6) and what goes out (§7).

Lengths are UTF-8 bytes, as the original measured them with jansson.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

MAX_NAME = 128
MAX_DISPLAY_NAME = 512
MAX_TYPE = 128
MAX_PROFILE_NAME = 256
MAX_MESSAGE = 512
MAX_PICTURE = 1024 * 1024
# One byte under 16 MiB so every backend stores it whole (MEDIUMBLOB, §13.9).
MAX_DATA = 16 * 1024 * 1024 - 1

_NAME = re.compile(r"[A-Za-z0-9]{1,128}")


def _byte_length(value: str) -> int:
    # Cheap bounds first: a 16 MiB string is not encoded unless it has to be.
    return len(value.encode("utf-8", "surrogatepass"))


class Text(fields.String):
    """A string limited in UTF-8 bytes; every failure gives the one message of the field."""

    def __init__(self, message: str, max_bytes: int, *, min_bytes: int = 0,
                 pattern: re.Pattern[str] | None = None, **kwargs: Any):
        errors = dict.fromkeys(("required", "null", "invalid", "invalid_utf8"), message)
        kwargs.setdefault("allow_none", False)  # an explicit null is not a string (§6)
        described = {"x-max-bytes": max_bytes, "minLength": min(min_bytes, 1)}
        if pattern is not None:
            described["pattern"] = "^" + pattern.pattern + "$"
        kwargs.setdefault("metadata", described)
        super().__init__(error_messages=errors, **kwargs)
        self.message = message
        self.max_bytes = max_bytes
        self.min_bytes = min_bytes
        self.pattern = pattern

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise ValidationError(self.message)
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise ValidationError(self.message)
        if len(value) > self.max_bytes or len(value) < self.min_bytes:
            raise ValidationError(self.message)
        if len(value) * 4 > self.max_bytes:
            size = _byte_length(value)
            if size > self.max_bytes or size < self.min_bytes:
                raise ValidationError(self.message)
        return value


def Name(message: str = f"name must be a string of maximum {MAX_NAME} characters",
         **kwargs: Any) -> Text:
    """Safe, key and coin names: 1-128 of [A-Za-z0-9], compared exactly."""
    return Text(message, MAX_NAME, min_bytes=1, pattern=_NAME, **kwargs)


class InputSchema(Schema):
    """Unknown members are ignored (§6): the front end sends whole objects back."""

    class Meta:
        unknown = EXCLUDE

    #: message when the body is not a JSON object
    not_an_object = "body must be a JSON object"

    def check(self, body: Any) -> tuple[dict[str, Any], list[str]]:
        """Validated data and the messages of every problem, in field order."""
        if not isinstance(body, dict):
            return {}, [self.not_an_object]
        try:
            return self.load(body), []
        except ValidationError as err:
            problems = err.normalized_messages()
            messages = []
            for name in self.fields:
                if name in problems:
                    found = problems[name]
                    messages.append(found[0] if isinstance(found, list) else str(found))
            return err.valid_data or {}, messages


class ProfileIn(InputSchema):
    not_an_object = "profile must be a JSON object"
    name = Text(f"name must be a string of maximum {MAX_PROFILE_NAME} characters",
                MAX_PROFILE_NAME, load_default=None)
    # (sic) the original's messages: 256 for message, 16M for picture.
    message = Text("message must be a string of maximum 256 characters", MAX_MESSAGE,
                   load_default=None)
    picture = Text("picture must be a string of maximum 16M characters", MAX_PICTURE,
                   load_default=None)
    sign_kid = fields.String(load_default=None, allow_none=False)

    def __init__(self, kids: Iterable[str], **kwargs: Any):
        super().__init__(**kwargs)
        kid_field = self.fields["sign_kid"]
        kid_field.error_messages.update(dict.fromkeys(("null", "invalid", "invalid_utf8"),
                                                      "invalid kid"))
        kid_field.validators = [validate.OneOf(list(kids), error="invalid kid")]


def _display_name() -> Text:
    return Text(f"display_name must be a string of maximum {MAX_DISPLAY_NAME} characters",
                MAX_DISPLAY_NAME, load_default=None)


def _data() -> Text:
    return Text("data must be a string of maximum 16M characters", MAX_DATA, min_bytes=1,
                required=True)


class SafeIn(InputSchema):
    not_an_object = "safe must be a JSON object"
    name = Name(required=True)
    display_name = _display_name()
    enc_type = Text(f"enc_type must be a string of maximum {MAX_TYPE} characters", MAX_TYPE,
                    load_default=None)
    alg_type = Text(f"alg_type must be a string of maximum {MAX_TYPE} characters", MAX_TYPE,
                    load_default=None)


class SafeKeyIn(InputSchema):
    not_an_object = "safe key must be a JSON object"
    name = Name(required=True)
    display_name = _display_name()
    type = Text(f"type must be a string of maximum {MAX_TYPE} characters", MAX_TYPE,
                load_default=None)
    data = _data()


class CoinIn(InputSchema):
    not_an_object = "safe coin must be a JSON object"
    name = Name(required=True)
    data = _data()


def for_update(schema: type[InputSchema]) -> InputSchema:
    """The PUT form of a schema: ``name`` is immutable, so it is not read (§7)."""
    return schema(exclude=("name",))


# What goes out: the payloads of signed answers (§7). Views build these dicts
# directly from rows; the schemas document them (OpenAPI) and check them in tests.
class ProfileOut(Schema):
    name = fields.String(allow_none=True)
    message = fields.String(allow_none=True)
    picture = fields.String(allow_none=True)
    sign_kid = fields.String(allow_none=True)
    last_updated = fields.Integer(allow_none=True)


class SafeOut(Schema):
    name = fields.String()
    display_name = fields.String(allow_none=True)
    enc_type = fields.String(allow_none=True)
    alg_type = fields.String(allow_none=True)
    last_updated = fields.Integer(allow_none=True)


class SafeKeyOut(Schema):
    type = fields.String(allow_none=True)
    name = fields.String()
    display_name = fields.String(allow_none=True)
    data = fields.String(allow_none=True)
    last_updated = fields.Integer(allow_none=True)


class CoinOut(Schema):
    name = fields.String()
    data = fields.String(allow_none=True)
    last_updated = fields.Integer(allow_none=True)
