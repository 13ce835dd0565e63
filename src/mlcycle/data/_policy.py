"""Find the columns of a table that look like personal data, before a version is written.

GDPR-aware pipelines have to know where personal data lives. At registration
every string column is scanned with Arrow's RE2 regex kernels, on a
deterministic sample (evenly spaced rows, at most ``sample_rows``), and only
its distinct values are matched, each weighted by its count. Integer columns
are scanned for card numbers only, and only their values of 13 digits or more
are turned into text (a shorter integer cannot be one; it still counts
towards the share). Column names are compared with the
configured personal names and deny-list. Findings are recorded on the dataset
version; their examples are masked, so the record holds no personal data.

What is detected:

- ``email``: ``local@domain.tld`` anywhere in a value.
- ``phone``: a whole value that is an international ``+`` number (9 to 15
  digits), or a national number written with separators (three or more groups
  of digits split by spaces, dots or dashes, or an area code in parentheses;
  the last group of two or more digits, so ISBNs are not phones; 9 to 12
  digits). Plain integers and ids never match: a ``+`` or separators
  are required. IPv4 addresses, dates (8 digits) and card numbers are not phones.
- ``ip_address``: an IPv4 address anywhere in a value (each octet 0-255), or a
  whole value that is an IPv6 address.
- ``card_number``: 13 to 19 digits, optionally split by spaces or dashes,
  starting with 2-6 (the ISO/IEC 7812 industries of payment cards), that pass
  the Luhn check (computed with numpy on the candidates only).
- ``listed_name`` / ``denied_column``: a column whose name is in
  ``personal_names`` / ``deny_columns``, compared case-insensitively and
  ignoring separators, so ``first_name`` also matches ``FirstName``,
  ``first-name`` and ``FIRST NAME``. ``matches`` is the column's non-null count.

The rule for a pattern: a column is flagged when at least ``MIN_MATCHES`` (10)
of its non-null sampled values match, or at least ``MIN_SHARE`` (5 %) of them
do; ``matches`` counts matching sampled values. One random digit string in ten
passes the Luhn check, so a column is also only flagged for card numbers when
at least ``MIN_LUHN_SHARE`` (half) of its card-shaped values pass it: a column
of random 16-digit ids is not a column of cards.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.errors import ValidationFailed

__all__ = [
    "MIN_LUHN_SHARE",
    "MIN_MATCHES",
    "MIN_SHARE",
    "PHONE_DIGITS",
    "POLICY_KINDS",
    "PolicyFinding",
    "PolicyKind",
    "scan_policy",
]

PolicyKind = Literal["email", "phone", "ip_address", "card_number", "listed_name", "denied_column"]
POLICY_KINDS: tuple[PolicyKind, ...] = get_args(PolicyKind)

MIN_MATCHES = 10
"""A pattern matched by this many sampled values flags the column, whatever their share."""
MIN_SHARE = 0.05
"""A pattern matched by this share of the non-null sampled values flags the column."""
MIN_LUHN_SHARE = 0.5
"""The share of card-shaped values that must pass the Luhn check (chance is 1 in 10)."""
EXAMPLES = 3
"""How many distinct masked examples a finding keeps."""

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H = r"[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join(
    (
        rf"(?:{_H}:){{7}}{_H}",
        rf"(?:{_H}:){{1,7}}:",
        rf"(?:{_H}:){{1,6}}:{_H}",
        rf"(?:{_H}:){{1,5}}(?::{_H}){{1,2}}",
        rf"(?:{_H}:){{1,4}}(?::{_H}){{1,3}}",
        rf"(?:{_H}:){{1,3}}(?::{_H}){{1,4}}",
        rf"(?:{_H}:){{1,2}}(?::{_H}){{1,5}}",
        rf"{_H}:(?::{_H}){{1,6}}",
        rf":(?:(?::{_H}){{1,7}}|:)",
        rf"::(?:[Ff]{{4}}(?::0{{1,4}})?:)?{_IPV4}",
        rf"(?:{_H}:){{1,4}}:{_IPV4}",
    )
)
_SEP = r"[ .\-]"
_GROUP = r"[0-9]{1,5}"
_LAST = r"[0-9]{2,5}"  # a last group of one digit is a check digit (ISBN), not a phone

EMAIL_RE = r"(?P<m>[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,})"
IPV4_RE = rf"(?:^|[^0-9.])(?P<m>{_IPV4})(?:$|[^0-9.]|\.(?:$|[^0-9]))"
IPV6_RE = rf"^\s*\[?(?P<m>(?:{_IPV6})(?:%[0-9A-Za-z]+)?)\]?\s*$"
PHONE_RE = (
    r"^\s*(?P<m>"
    r"\+[0-9]{8,15}"
    rf"|(?:\+[0-9]{{1,4}}{_SEP}?)?\({_GROUP}\){_SEP}?(?:{_GROUP}{_SEP}){{0,4}}{_LAST}"
    rf"|\+[0-9]{{1,4}}{_SEP}?(?:{_GROUP}{_SEP}){{1,5}}{_LAST}"
    rf"|(?:{_GROUP}{_SEP}){{2,5}}{_LAST}"
    r")\s*$"
)
_CARD = r"[2-6][0-9](?:[ \-]?[0-9]){11,17}"
CARD_RE = rf"(?:^|[^0-9])(?P<m>{_CARD})(?:$|[^0-9])"
CARD_WHOLE_RE = rf"^\s*{_CARD}\s*$"
PHONE_DIGITS = 9, 12, 15
"""A phone has at least 9 digits, at most 12 written nationally and 15 with ``+`` (E.164)."""

_Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class PolicyFinding:
    """A column that looks like personal data, or is named on the deny-list."""

    column: str
    kind: PolicyKind
    matches: int
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "column": self.column,
            "kind": self.kind,
            "matches": self.matches,
            "examples": list(self.examples),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicyFinding:
        """Rebuild a finding from ``to_dict()`` output.

        Raises:
            ValidationFailed: a key is missing or the kind is unknown.
        """
        try:
            kind = data["kind"]
            column, matches = str(data["column"]), int(data["matches"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationFailed(f"not a policy finding: {data!r} ({exc})") from exc
        if kind not in POLICY_KINDS:
            raise ValidationFailed(
                f"unknown policy finding kind {kind!r}; expected one of {', '.join(POLICY_KINDS)}"
            )
        examples = [str(example) for example in data.get("examples", ())]
        return cls(column=column, kind=kind, matches=matches, examples=examples)


def scan_policy(
    table: pa.Table,
    *,
    personal_names: Sequence[str] = (),
    deny_columns: Sequence[str] = (),
    sample_rows: int = 100_000,
) -> list[PolicyFinding]:
    """Return the findings for ``table``, column by column in table order.

    >>> import pyarrow as pa
    >>> table = pa.table({"contact": ["ada@example.com", "alan@example.org"], "n": [1, 2]})
    >>> [finding.to_dict() for finding in scan_policy(table, deny_columns=["N"])]
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'column': 'contact', 'kind': 'email', 'matches': 2,
      'examples': ['a***@example.com', 'a***@example.org']},
     {'column': 'n', 'kind': 'denied_column', 'matches': 2, 'examples': []}]

    Raises:
        ValidationFailed: ``sample_rows`` is not positive.
    """
    if sample_rows < 1:
        raise ValidationFailed(
            f"sample_rows must be at least 1, got {sample_rows}; "
            "set data.pii_sample_rows to a positive number"
        )
    personal = {_name_key(name) for name in personal_names}
    denied = {_name_key(name) for name in deny_columns}
    positions = _sample_positions(table.num_rows, sample_rows)
    findings: list[PolicyFinding] = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        sampled = _sampled_values(column, positions)
        listed: tuple[tuple[PolicyKind, set[str]], ...] = (
            ("denied_column", denied),
            ("listed_name", personal),
        )
        for kind, names in listed:
            if _name_key(name) in names:
                examples = _examples(sampled.values, _mask_text) if sampled.text else []
                findings.append(
                    PolicyFinding(name, kind, len(column) - column.null_count, examples)
                )
        findings.extend(_scan_values(name, sampled))
    return findings


def _name_key(name: str) -> str:
    return "".join(char for char in name.casefold() if char.isalnum())


def _sample_positions(rows: int, limit: int) -> pa.Array | None:
    """Evenly spaced rows over the whole table, so the sample is the same on every run."""
    if rows <= limit:
        return None
    return pa.array(np.arange(limit, dtype=np.int64) * rows // limit)


@dataclass(frozen=True)
class _Sampled:
    """A column's distinct non-null sampled values, as strings, with their counts.

    ``total`` counts every non-null sampled value; for an integer column
    ``values`` holds only those long enough to be a card number.
    """

    values: pa.Array
    counts: npt.NDArray[np.int64]
    text: bool
    total: int


_NOTHING = _Sampled(pa.array([], pa.large_string()), np.zeros(0, np.int64), text=False, total=0)

_CARD_SIZE = 10**12
"""The smallest integer with 13 digits: a shorter one (either sign) cannot be a card number."""


def _sampled_values(column: pa.ChunkedArray, positions: pa.Array | None) -> _Sampled:
    """Text columns are scanned for every pattern, integers for card numbers, others not."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    text = _is_text(kind)
    if not (text or pa.types.is_integer(kind)):
        return _NOTHING
    sampled = pc.drop_null(column if positions is None else column.take(positions)).cast(kind)
    total = len(sampled)
    if not text:  # only 13 to 19 digits can match CARD_RE: count and cast just those
        sampled = sampled.filter(_card_sized(sampled))
    counted = pc.value_counts(sampled)
    values = counted.field("values").cast(pa.large_string())
    counts = counted.field("counts").to_numpy(zero_copy_only=False).astype(np.int64)
    return _Sampled(values, counts, text=text, total=total)


def _card_sized(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Which integers have at least 13 digits (the pattern's minimum), whatever their sign."""
    if values.type.bit_width < 64:  # narrower integers never reach 13 digits
        return pa.chunked_array([np.zeros(len(values), dtype=np.bool_)], pa.bool_())
    if pa.types.is_unsigned_integer(values.type):
        return pc.greater_equal(values, _CARD_SIZE)
    return pc.or_(pc.greater_equal(values, _CARD_SIZE), pc.less_equal(values, -_CARD_SIZE))


def _is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def _scan_values(name: str, sampled: _Sampled) -> list[PolicyFinding]:
    values, counts, total = sampled.values, sampled.counts, sampled.total
    if total == 0:
        return []
    card, candidates = _card_mask(values)
    findings = [_finding(name, "card_number", sampled, card, _mask_card)]
    if int(counts[candidates].sum()) * MIN_LUHN_SHARE > int(counts[card].sum()):
        findings = []
    if not sampled.text:
        return [finding for finding in findings if _meaningful(finding, total)]
    ipv4 = _matches(values, IPV4_RE)
    ip = ipv4 | _matches(values, IPV6_RE)
    phone = _phone_mask(values) & ~ipv4 & ~card
    findings = [
        _finding(name, "email", sampled, _matches(values, EMAIL_RE), _mask_email),
        _finding(name, "phone", sampled, phone, _mask_phone),
        _finding(name, "ip_address", sampled, ip, _mask_ip),
        *findings,
    ]
    return [finding for finding in findings if _meaningful(finding, total)]


def _meaningful(finding: PolicyFinding, total: int) -> bool:
    return finding.matches >= MIN_MATCHES or (
        finding.matches > 0 and finding.matches >= MIN_SHARE * total
    )


def _finding(
    name: str, kind: PolicyKind, sampled: _Sampled, mask: _Mask, hide: Callable[[str], str]
) -> PolicyFinding:
    matched = _extract(sampled.values.filter(pa.array(mask)), kind)
    return PolicyFinding(name, kind, int(sampled.counts[mask].sum()), _examples(matched, hide))


_PATTERNS: dict[str, str] = {
    "email": EMAIL_RE,
    "phone": PHONE_RE,
    "card_number": CARD_RE,
}


def _extract(values: pa.Array, kind: PolicyKind) -> pa.Array:
    """The matching part of each value (the value itself where the whole value matched)."""
    if kind not in _PATTERNS or len(values) == 0:
        return values.slice(0, EXAMPLES * 4)
    head = values.slice(0, EXAMPLES * 4)
    return pc.struct_field(pc.extract_regex(head, _PATTERNS[kind]), "m")


def _examples(values: pa.Array, hide: Callable[[str], str]) -> list[str]:
    examples: list[str] = []
    for value in values.slice(0, EXAMPLES * 4).to_pylist():
        masked = hide(str(value).strip())
        if masked not in examples:
            examples.append(masked)
    return examples[:EXAMPLES]


def _matches(values: pa.Array, pattern: str) -> _Mask:
    return np.asarray(pc.match_substring_regex(values, pattern).to_numpy(zero_copy_only=False))


def _digits(values: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(values, r"[^0-9]", "")


def _phone_mask(values: pa.Array) -> _Mask:
    shaped = _matches(values, PHONE_RE)
    phones = values.filter(pa.array(shaped))
    lengths = pc.utf8_length(_digits(phones)).to_numpy(zero_copy_only=False)
    international = _matches(phones, r"^\s*\+")
    low, national, most = PHONE_DIGITS
    shaped[shaped] = (lengths >= low) & (lengths <= np.where(international, most, national))
    return shaped


def _card_mask(values: pa.Array) -> tuple[_Mask, _Mask]:
    """Values holding a Luhn-valid card number, and values holding anything card-shaped."""
    candidates = _matches(values, CARD_RE)
    card = np.zeros(len(values), dtype=np.bool_)
    whole = candidates.copy()
    whole[candidates] = _matches(values.filter(pa.array(candidates)), CARD_WHOLE_RE)
    card[whole] = _luhn_valid(_digits(values.filter(pa.array(whole))))
    inside = candidates & ~whole
    if inside.any():  # extracting is slower than matching: only for numbers inside text
        found = pc.struct_field(pc.extract_regex(values.filter(pa.array(inside)), CARD_RE), "m")
        card[inside] = _luhn_valid(_digits(found))
    return card, candidates


_LUHN = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 2, 4, 6, 8, 1, 3, 5, 7, 9]], dtype=np.uint8)
"""Each digit's Luhn contribution: as it is (row 0), or doubled with its digits summed (row 1)."""


def _luhn_valid(digits: pa.Array) -> _Mask:
    """Check strings of ASCII digits with the Luhn checksum, all at once in numpy."""
    strings = digits.cast(pa.large_string())
    rows = len(strings)
    data_buffer = strings.buffers()[2] if rows else None
    if data_buffer is None:
        return np.zeros(rows, dtype=np.bool_)
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int64)
    offsets = offsets[strings.offset : strings.offset + rows + 1]
    digit = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]] - ord("0")
    lengths = np.diff(offsets)
    # A digit is doubled when its distance from the end of its string is odd.
    end_parity = np.repeat(((offsets[1:] - offsets[0] - 1) & 1).astype(np.uint8), lengths)
    doubled = end_parity ^ (np.arange(len(digit), dtype=np.int64) & 1).astype(np.uint8)
    contribution = _LUHN[doubled, digit]
    owner = np.repeat(np.arange(rows), lengths)
    sums = np.bincount(owner, weights=contribution, minlength=rows).astype(np.int64)
    return np.asarray((sums % 10 == 0) & (lengths > 0))


def _mask_text(value: str) -> str:
    return f"{value[:1]}***"


def _mask_email(value: str) -> str:
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}"


def _mask_phone(value: str) -> str:
    """Hide every digit but the last two; keep ``+`` and separators, so the format shows."""
    total = sum(char.isdigit() for char in value)
    seen, out = 0, []
    for char in value:
        if char.isdigit():
            seen += 1
            out.append(char if seen > total - 2 else "*")
        else:
            out.append(char)
    return "".join(out)


def _mask_card(value: str) -> str:
    digits = "".join(char for char in value if char.isdigit())
    return f"**** **** **** {digits[-4:]}"


def _mask_ip(value: str) -> str:
    ipv4 = re.search(IPV4_RE, value)
    if ipv4 is None:
        return ":".join(value.strip("[]").split(":")[:2]) + ":*:*"
    first, second, *_ = ipv4["m"].split(".")
    return f"{first}.{second}.*.*"
