"""From an HTML form to the JSON body the API takes, and from the API's field names back to
the form's, so the console validates with the very parsers of the API (incident.parse_*)
and shows each error beside its field in the page's language."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ivr.console import t
from ivr.errors import ApiError
from ivr.lang import LANGS

T = TypeVar("T")
U = TypeVar("U")
_INDEX = re.compile(r"\[\d+\]")


def words(value: str | None) -> list[str]:
    """'mail  web' or one a line -> ['mail', 'web']."""
    return [w for w in re.split(r"[\s,、]+", value or "") if w]


def per_language(form: Mapping[str, str], prefix: str) -> dict[str, str]:
    """{"ja": …, "en": …} from prefix_ja / prefix_en, leaving out empty ones."""
    return {lang: form[f"{prefix}_{lang}"].strip() for lang in LANGS
            if (form.get(f"{prefix}_{lang}") or "").strip()}


def eta(form: Mapping[str, str]) -> str | None:
    """A datetime-local value is local time (IVR_TIMEZONE), as the API reads one without
    an offset; empty means 確認中 (null)."""
    value = (form.get("eta") or "").strip()
    return value or None


def scope(form: Mapping[str, str]) -> dict[str, list[str]]:
    return {"services": words(form.get("scope_services")),
            "regions": words(form.get("scope_regions")),
            "numbers": words(form.get("scope_numbers"))}


def form_field(api_field: str | None) -> str:
    """The API's field name (`scope.numbers[2]`, `announcement.ja`) as the form's."""
    return _INDEX.sub("", api_field or "form").replace(".", "_")


def checked(parse: Callable[[], T]) -> tuple[T | None, dict[str, str]]:
    """Run one of the API's parsers or domain calls; on a 400 (bad input), the error by form
    field, in the page's language with the API's own words after it. Other refusals (404,
    409 already resolved) go to the console's error page with their status."""
    try:
        return parse(), {}
    except ApiError as e:
        if e.status != 400:
            raise
        errors = {form_field(e.field): message(e)}
        for item in e.errors or []:
            errors.setdefault(form_field(item.get("field")),
                              message(ApiError(400, e.code, item["message"], item.get("field"))))
        return None, errors


def message(e: ApiError) -> str:
    name = form_field(e.field)
    label = t(name) if name != "form" else ""
    if label and label != name:
        return f"{t('field_error', label=label)}: {e.message}"
    return e.message


def values(form: Mapping[str, str]) -> dict[str, Any]:
    """The submitted values, to refill the form after an error."""
    return {k: v for k, v in form.items() if k != "csrf_token"}


def compact(body: dict[str, Any], *, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """The body without the fields the form left empty (None), but for `keep`, whose null
    means something (eta: 確認中)."""
    return {k: v for k, v in body.items() if v is not None or k in keep}


def validated(schema: str, body: Any, parse: Callable[[], T]) -> tuple[T | None, dict[str, str]]:
    """The API's two checks in its order: the request schema (every bad field at once, as
    the API's 400 lists them), then the parser or domain call (`checked`)."""
    from ivr import schemas

    problems = schemas.validate(schema, body)
    if problems:
        errors: dict[str, str] = {}
        for problem in problems:
            errors.setdefault(form_field(problem.field),
                              message(ApiError(400, "invalid_field", problem.message,
                                               problem.field)))
        return None, errors
    return checked(parse)


def submitted(schema: str, body: Any, parse: Callable[[], T], act: Callable[[T], U]
              ) -> tuple[U | None, dict[str, str]]:
    """A form that changes something: `validated` (schema, then the API's parser), then the
    domain call `act` on what the parser returned (`checked`); the errors of whichever
    refused, by form field."""
    parsed, errors = validated(schema, body, parse)
    if parsed is None:
        return None, errors
    return checked(lambda: act(parsed))
