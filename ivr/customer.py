"""Customers: who is calling, what they use, where, in which language, and SMS consent.

Records come in as JSON objects (PUT /api/customers) or CSV rows (the import); both are
checked here into `CustomerUpdate`s, then `upsert_many` merges them with what Redis holds.
`sms_opt_in` is the consent flag from the customer's own records; the suppression list
(keys.sms_optout(): STOP, the opt-out link, Twilio 21610) is separate and never written here.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC
from typing import Any

import redis

from ivr import keys, undeliverable
from ivr.errors import StorageConflict
from ivr.lang import LANGS
from ivr.phone import is_mobile, normalize
from ivr.schemas import xml_forbidden
from ivr.services import Services

TIERS = ("standard", "vip")
FIELDS = ("phone", "name", "account_id", "tier", "services", "region", "language", "sms_opt_in")
"""What a sender may give; `mobile` and `updated_at` are computed, never accepted."""

CHUNK_SIZE = 1000
"""Customers written per MULTI/EXEC: small enough to keep Redis responsive, large enough
that a 100k-row import is a hundred round trips, not a hundred thousand."""
WATCH_ATTEMPTS = 5
MAX_TEXT = {"name": 200, "account_id": 100}
MAX_LABEL = 64
MAX_SERVICES = 50
MAX_ERRORS = 100
"""How many row errors an import reports; one bad column in a big file is thousands."""

CSV_TRUE = ("true", "1", "yes")
CSV_FALSE = ("false", "0", "no")
CSV_LIST_SEPARATOR = re.compile(r"[;|]")
# Services and regions become parts of Redis keys ({ivr}:customers:service:<s>), so they may
# not hold ':' or whitespace; ';' and '|' separate them in a CSV cell.
LABEL_FORBIDDEN = re.compile(r"[:;|\s]")


class ValidationError(ValueError):
    """One refused value: the field it is about and, for imports, the CSV row (header = 1)."""

    def __init__(self, field: str | None, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.field, self.message, self.row = field, message, row


class RecordsRejected(Exception):
    """A batch with invalid records; nothing of it was written.

    `errors` holds the first MAX_ERRORS problems in input order (`row` is the CSV row, or
    the 0-based list index for JSON), `count` how many there were in all.
    """

    def __init__(self, errors: list[ValidationError], count: int) -> None:
        super().__init__(f"{count} invalid value(s)")
        self.errors, self.count = errors, count


class ConflictError(StorageConflict):
    """Other writers kept changing the same customers; the chunk was not written."""


@dataclass(frozen=True)
class Customer:
    """One customer, keyed by E.164 phone number."""

    phone: str
    name: str = ""
    account_id: str = ""
    tier: str = "standard"
    services: list[str] = field(default_factory=list)
    region: str = ""
    language: str = "ja"
    sms_opt_in: bool = True
    mobile: bool = False
    updated_at: str = ""
    updated_by: str = ""

    def to_hash(self) -> dict[str, str]:
        """The Redis hash form (README: {ivr}:customer:<phone>)."""
        data = asdict(self)
        data["services"] = json.dumps(self.services, ensure_ascii=False)
        data["sms_opt_in"] = "1" if self.sms_opt_in else "0"
        data["mobile"] = "1" if self.mobile else "0"
        return data

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> Customer | None:
        if not data or "phone" not in data:
            return None
        return cls(
            phone=data["phone"],
            name=data.get("name", ""),
            account_id=data.get("account_id", ""),
            tier=data.get("tier", "standard"),
            services=json.loads(data.get("services") or "[]"),
            region=data.get("region", ""),
            language=data.get("language", "ja"),
            sms_opt_in=data.get("sms_opt_in", "1") == "1",
            mobile=data.get("mobile", "0") == "1",
            updated_at=data.get("updated_at", ""),
            updated_by=data.get("updated_by", ""),
        )

    def to_json(self, *, opted_out: bool,
                mark: undeliverable.Mark | None = None) -> dict[str, Any]:
        """The API's view: the record, the suppression-list state and an undeliverable
        mark (`{"error_code", "until"}` or null; an upsert always clears it)."""
        data = asdict(self)
        data["opted_out"] = opted_out
        data["sms_undeliverable"] = mark.to_json() if mark else None
        return data


@dataclass(frozen=True)
class CustomerUpdate:
    """A checked record: the E.164 phone plus only the fields the sender actually gave.

    Keeping "not given" apart from "given as the default" is what lets an upsert merge.
    """

    phone: str
    changes: Mapping[str, Any]


def get(svc: Services, phone: str) -> tuple[Customer | None, bool]:
    """The customer (or None) and whether the number is on the suppression list."""
    pipe = svc.redis.pipeline(transaction=False)
    pipe.hgetall(keys.customer(phone))
    pipe.sismember(keys.sms_optout(), phone)
    data, opted_out = pipe.execute()
    return Customer.from_hash(data), bool(opted_out)


def opted_out_many(svc: Services, phones: Sequence[str]) -> list[bool]:
    """Suppression-list membership for many numbers in one round trip."""
    if not phones:
        return []
    return [bool(m) for m in svc.redis.smismember(keys.sms_optout(), list(phones))]


# --- checking input -----------------------------------------------------------------------


def _clean_text(value: Any, name: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise ValidationError(name, f"{name} must be a string")
    value = value.strip()
    if len(value) > max_len:
        raise ValidationError(name, f"{name} is longer than {max_len} characters")
    if any(unicodedata.category(c) == "Cc" for c in value) or xml_forbidden(value):
        raise ValidationError(name, f"{name} must not contain control characters, "
                                    "noncharacters or lone surrogates")
    return value


def _label(value: Any, name: str) -> str:
    """A service or region name, which ends up inside a Redis key."""
    text = _clean_text(value, name, MAX_LABEL)
    if LABEL_FORBIDDEN.search(text):
        raise ValidationError(name, f"{name} must not contain spaces, ':', ';' or '|'")
    return text


def _choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in options:
        raise ValidationError(name, f"{name} must be one of {', '.join(options)}")
    return str(text)


def _services(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError("services", "services must be a list of strings")
    if len(value) > MAX_SERVICES:
        raise ValidationError("services", f"services has more than {MAX_SERVICES} entries")
    out: list[str] = []
    for item in value:
        label = _label(item, "services")
        if not label:
            raise ValidationError("services", "services must not contain empty names")
        if label not in out:
            out.append(label)
    return out


def _check_field(name: str, value: Any) -> Any:
    """One given value, cleaned; None clears the free-text fields and `services`."""
    if name in MAX_TEXT:
        return "" if value is None else _clean_text(value, name, MAX_TEXT[name])
    if name == "region":
        return "" if value is None else _label(value, name)
    if name == "services":
        return _services(value)
    if name == "tier":
        return _choice(value, name, TIERS)
    if name == "language":
        return _choice(value, name, LANGS)
    if name == "sms_opt_in":
        if not isinstance(value, bool):
            raise ValidationError(name, "sms_opt_in must be true or false")
        return value
    raise ValidationError(name, f"unknown field {name}")


def _check_phone(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValidationError("phone", "phone is required")
    if not isinstance(value, str):
        raise ValidationError("phone", "phone must be a string (a number loses its leading 0)")
    e164 = normalize(value)
    if e164 is None:
        raise ValidationError("phone", "phone is not a valid phone number")
    return e164


def _check_record(
    record: Mapping[str, Any], row: int | None
) -> tuple[CustomerUpdate | None, list[ValidationError]]:
    """Every problem of one record (not only the first), so an import report is complete."""
    errors: list[ValidationError] = []
    for name in record:
        if name not in FIELDS:
            errors.append(ValidationError(str(name), f"unknown field {name}", row))
    phone: str | None = None
    try:
        phone = _check_phone(record.get("phone"))
    except ValidationError as e:
        errors.append(ValidationError(e.field, e.message, row))
    changes: dict[str, Any] = {}
    for name in FIELDS[1:]:
        if name in record:
            try:
                changes[name] = _check_field(name, record[name])
            except ValidationError as e:
                errors.append(ValidationError(e.field, e.message, row))
    if errors or phone is None:
        return None, errors
    return CustomerUpdate(phone, changes), []


def check(record: Any) -> CustomerUpdate:
    """Check one JSON customer object; raise ValidationError naming the first bad field."""
    if not isinstance(record, dict):
        raise ValidationError(None, "a customer must be a JSON object")
    update, errors = _check_record(record, None)
    if errors:
        raise errors[0]
    assert update is not None
    return update


def check_many(records: Sequence[Any]) -> list[CustomerUpdate]:
    """Check a JSON list of customers; RecordsRejected (row = list index) if any is bad."""
    updates: list[CustomerUpdate] = []
    errors: list[ValidationError] = []
    count = 0
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            found = [ValidationError(None, "a customer must be a JSON object", index)]
        else:
            update, found = _check_record(record, index)
            if update is not None:
                updates.append(update)
        count += len(found)
        errors.extend(found[: MAX_ERRORS - len(errors)])
    if count:
        raise RecordsRejected(errors, count)
    return updates


def _csv_record(
    header: list[str], cells: list[str], row: int
) -> tuple[dict[str, Any], list[ValidationError]]:
    """A CSV row as a JSON-like record; an empty cell means "not given" (keep stored)."""
    record: dict[str, Any] = {}
    errors: list[ValidationError] = []
    if len(cells) > len(header) and any(c.strip() for c in cells[len(header) :]):
        errors.append(
            ValidationError(
                None, f"row has more cells than the header's {len(header)} columns", row
            )
        )
    for name, cell in zip(header, cells, strict=False):
        cell = cell.strip()
        if not cell:
            continue
        if name == "services":
            record[name] = [s for s in CSV_LIST_SEPARATOR.split(cell) if s.strip()]
        elif name == "sms_opt_in":
            lowered = cell.lower()
            if lowered in CSV_TRUE:
                record[name] = True
            elif lowered in CSV_FALSE:
                record[name] = False
            else:
                errors.append(
                    ValidationError(
                        name, "sms_opt_in must be one of true, false, 1, 0, yes, no", row
                    )
                )
        else:
            record[name] = cell
    return record, errors


def _csv_header(row: int, cells: list[str]) -> list[str]:
    """The column names, lower-cased; unknown, doubled or missing `phone` refuses the file."""
    header = [name.strip().lower() for name in cells]
    problems: list[ValidationError] = []
    for i, name in enumerate(header):
        if name not in FIELDS:
            problems.append(
                ValidationError(
                    name or None,
                    f"unknown column {name!r}; the "
                    f"first row must name the columns: "
                    f"{', '.join(FIELDS)}",
                    row,
                )
            )
        elif name in header[:i]:
            problems.append(ValidationError(name, f"column {name} appears twice", row))
    if "phone" not in header:
        problems.append(ValidationError("phone", "the header has no phone column", row))
    if problems:
        raise RecordsRejected(problems[:MAX_ERRORS], len(problems))
    return header


def parse_csv(data: bytes) -> list[CustomerUpdate]:
    """Check a whole CSV import (UTF-8, optional BOM, header row first).

    Rows are numbered like a spreadsheet: the header is row 1. A problem in any row raises
    RecordsRejected before anything is written, because a half-imported customer list
    would announce an incident to the wrong people; a file that is not UTF-8 or has no
    header raises ValidationError.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValidationError(None, f"the file is not UTF-8 (line {line})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows = iter(enumerate(reader, start=1))
    try:
        first = next(((row, cells) for row, cells in rows if any(c.strip() for c in cells)), None)
        if first is None:
            raise ValidationError(None, "the file is empty; a header row is required")
        columns = _csv_header(*first)
        updates: list[CustomerUpdate] = []
        errors: list[ValidationError] = []
        count = 0
        for row, cells in rows:
            if not any(c.strip() for c in cells):
                continue
            record, found = _csv_record(columns, cells, row)
            update, more = _check_record(record, row)
            found += more
            if update is not None and not found:
                updates.append(update)
            count += len(found)
            errors.extend(found[: MAX_ERRORS - len(errors)])
    except csv.Error as e:
        raise RecordsRejected(
            [ValidationError(None, f"malformed CSV: {e}", reader.line_num)], 1
        ) from None
    if count:
        raise RecordsRejected(errors, count)
    return updates


# --- writing ------------------------------------------------------------------------------


def _merge_same_phone(updates: Iterable[CustomerUpdate]) -> dict[str, dict[str, Any]]:
    """One change set per number, later records winning field by field, as in the input."""
    merged: dict[str, dict[str, Any]] = {}
    for update in updates:
        merged.setdefault(update.phone, {}).update(update.changes)
    return merged


def upsert_many(
    svc: Services, updates: Iterable[CustomerUpdate], *, chunk_size: int = CHUNK_SIZE,
    by: str = "",
) -> list[Customer]:
    """Upsert by phone and keep the service/region/all index sets in step; return the result.

    Merge semantics: a field the record does not give keeps its stored value (a new
    customer gets the dataclass default), so a CSV with only `phone,region` moves customers
    without wiping their names. `mobile` and `updated_at` are always recomputed.

    Each chunk is one WATCH/MULTI/EXEC: a concurrent writer (another import, the opt-in key
    on the call flow) makes the chunk re-read and retry rather than lose an index update.
    Chunks are independent; a re-run after a failure is safe because upserts are idempotent.
    The same number appearing twice counts once.
    """
    merged = list(_merge_same_phone(updates).items())
    now = svc.now().astimezone(UTC).isoformat()
    written: list[Customer] = []
    for start in range(0, len(merged), chunk_size):
        written += _write_chunk(svc, merged[start : start + chunk_size], now, by)
    return written


def _write_chunk(
    svc: Services, chunk: list[tuple[str, dict[str, Any]]], now: str, by: str
) -> list[Customer]:
    hash_keys = [keys.customer(phone) for phone, _ in chunk]
    with svc.redis.pipeline(transaction=True) as pipe:
        for _ in range(WATCH_ATTEMPTS):
            try:
                pipe.watch(*hash_keys)
                # Read on a separate plain pipeline: one round trip for the whole chunk, and
                # WATCH (already set) still voids the EXEC if anything changes after it.
                reader = svc.redis.pipeline(transaction=False)
                for key in hash_keys:
                    reader.hgetall(key)
                stored = reader.execute()
                customers: list[Customer] = []
                pipe.multi()
                for (phone, changes), data in zip(chunk, stored, strict=True):
                    old = Customer.from_hash(data) or Customer(phone=phone)
                    new = replace(
                        old, **changes, phone=phone, mobile=is_mobile(phone), updated_at=now,
                        updated_by=by,
                    )
                    _queue_write(pipe, old if data else None, new)
                    customers.append(new)
                pipe.execute()
                return customers
            except redis.WatchError:
                continue
    raise ConflictError(f"customers kept changing during {WATCH_ATTEMPTS} attempts")


def _queue_write(pipe: redis.client.Pipeline, old: Customer | None, new: Customer) -> None:
    """The hash plus the index sets, removing the number from sets it has left. An upsert
    also lifts an undeliverable mark: ops corrected or confirmed the number."""
    fields: Mapping[Any, Any] = new.to_hash()  # redis-py's Mapping type is invariant in str
    pipe.hset(keys.customer(new.phone), mapping=fields)
    undeliverable.clear_in(pipe, new.phone)
    pipe.sadd(keys.customers_all(), new.phone)
    if old is not None:
        for service in set(old.services) - set(new.services):
            pipe.srem(keys.customers_by_service(service), new.phone)
        if old.region and old.region != new.region:
            pipe.srem(keys.customers_by_region(old.region), new.phone)
    for service in new.services:
        pipe.sadd(keys.customers_by_service(service), new.phone)
    if new.region:
        pipe.sadd(keys.customers_by_region(new.region), new.phone)
