"""The personal-data scan: what it flags, what it must not flag, and its masked examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcycle.data import PolicyFinding, scan_policy
from mlcycle.data._policy import POLICY_KINDS, _luhn_valid
from mlcycle.datasets import BIKE_SHARING_HOURLY
from mlcycle.errors import ValidationFailed
from mlcycle.settings import DataSettings

ADULT = Path("/work/shared/data/adult/adult.csv")  # read in place: never copied

DIGITS = "0123456789"
# Issuer prefixes and lengths of real card brands: Visa, Mastercard (both ranges),
# American Express, Discover, JCB, UnionPay.
BRANDS: list[tuple[str, tuple[int, ...]]] = [
    ("4", (13, 16, 19)),
    ("51", (16,)),
    ("55", (16,)),
    ("2221", (16,)),
    ("2720", (16,)),
    ("34", (15,)),
    ("37", (15,)),
    ("6011", (16, 19)),
    ("65", (16,)),
    ("35", (16,)),
    ("62", (16, 17, 18, 19)),
]


def luhn_ok(number: str) -> bool:
    """The textbook Luhn check, one digit at a time (the reference for the numpy one)."""
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit >= 5 else digit * 2
        total += digit
    return total % 10 == 0


def check_digit(body: str) -> str:
    return next(digit for digit in DIGITS if luhn_ok(body + digit))


def spaced(number: str, separator: str) -> str:
    return separator.join(number[start : start + 4] for start in range(0, len(number), 4))


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    """A Luhn-valid card number of a real brand, plain or grouped by spaces or dashes."""
    prefix, lengths = draw(st.sampled_from(BRANDS))
    length = draw(st.sampled_from(lengths))
    size = length - len(prefix) - 1
    body = prefix + draw(st.text(DIGITS, min_size=size, max_size=size))
    return spaced(body + check_digit(body), draw(st.sampled_from(["", " ", "-"])))


def broken(number: str) -> str:
    """The same number, in the same format, with a wrong check digit."""
    body = "".join(char for char in number[:-1] if char.isdigit())
    return number[:-1] + next(digit for digit in DIGITS if not luhn_ok(body + digit))


def kinds(findings: list[PolicyFinding]) -> list[tuple[str, str]]:
    return [(finding.column, finding.kind) for finding in findings]


def test_the_reference_generator_makes_known_test_cards() -> None:
    assert luhn_ok("4242424242424242")
    assert luhn_ok("378282246310005")
    assert not luhn_ok("4242424242424241")
    assert check_digit("424242424242424") == "2"


@given(st.lists(card_numbers(), min_size=1, max_size=30))
def test_valid_card_numbers_are_flagged_and_masked(cards: list[str]) -> None:
    findings = scan_policy(pa.table({"pan": cards}))
    assert kinds(findings) == [("pan", "card_number")]
    assert findings[0].matches == len(cards)
    last_four = {"".join(c for c in card if c.isdigit())[-4:] for card in cards}
    for example in findings[0].examples:
        assert example.startswith("**** **** **** ")
        assert example[-4:] in last_four


@given(st.lists(card_numbers().map(broken), min_size=1, max_size=30))
def test_luhn_invalid_card_numbers_are_not_flagged(numbers: list[str]) -> None:
    assert scan_policy(pa.table({"pan": numbers})) == []


@given(
    st.lists(
        st.text(DIGITS, min_size=13, max_size=19).filter(lambda n: not luhn_ok(n)),
        min_size=1,
        max_size=30,
    )
)
def test_non_card_digit_strings_and_integers_are_not_flagged(numbers: list[str]) -> None:
    table = pa.table({"text": numbers, "number": [int(n) % 2**63 for n in numbers]})
    assert [f for f in scan_policy(table) if f.column == "text"] == []


@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=1, max_size=50))
def test_plain_integers_are_never_phones(numbers: list[int]) -> None:
    findings = scan_policy(pa.table({"as_int": numbers, "as_text": [str(n) for n in numbers]}))
    assert all(finding.kind == "card_number" for finding in findings)


@given(st.lists(st.text(DIGITS, min_size=0, max_size=25), max_size=40))
def test_vectorised_luhn_agrees_with_the_textbook_one(numbers: list[str]) -> None:
    expected = [bool(number) and luhn_ok(number) for number in numbers]
    assert _luhn_valid(pa.array(numbers, pa.string())).tolist() == expected


def test_luhn_works_on_a_slice() -> None:
    numbers = pa.array(["4242424242424241", "4242424242424242", "79927398713", "1"])
    assert _luhn_valid(numbers.slice(1, 2)).tolist() == [True, True]


def test_integer_card_numbers_are_flagged() -> None:
    table = pa.table({"pan": pa.array([4242424242424242, 5555555555554444, None], pa.int64())})
    findings = scan_policy(table)
    assert kinds(findings) == [("pan", "card_number")]
    assert findings[0].examples == ["**** **** **** 4242", "**** **** **** 4444"]


card_or_not = st.one_of(
    st.sampled_from(
        ["4242424242424242", "5555555555554444", "378282246310005", "6011000990139424"]
    ),
    st.text(DIGITS, min_size=13, max_size=19).filter(lambda n: n[0] != "0"),
).map(int) | st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(st.lists(card_or_not.map(lambda n: n if n < 2**63 else n % 2**63), min_size=1, max_size=60))
def test_an_integer_column_is_scanned_as_its_decimal_text_is_for_cards(numbers: list[int]) -> None:
    # Integers shorter than 13 digits are left out before the cast to text: same findings.
    as_int = scan_policy(pa.table({"n": pa.array(numbers, pa.int64())}))
    as_text = scan_policy(pa.table({"n": [str(n) for n in numbers]}))
    assert as_int == [finding for finding in as_text if finding.kind == "card_number"]


@pytest.mark.parametrize("type_", [pa.int64(), pa.uint64()])
def test_short_integers_still_count_towards_the_share_of_card_numbers(type_: pa.DataType) -> None:
    cards = [4242424242424242] * 9  # under MIN_MATCHES, and under MIN_SHARE of the 1,000 values
    assert scan_policy(pa.table({"n": pa.array([*cards, *range(991)], type_)})) == []
    flagged = scan_policy(pa.table({"n": pa.array([*cards, *range(91)], type_)}))
    assert kinds(flagged) == [("n", "card_number")]
    assert flagged[0].matches == 9


def test_negative_integer_card_numbers_are_flagged_and_narrow_integers_skipped() -> None:
    table = pa.table(
        {
            "neg": pa.array([-4242424242424242] * 12, pa.int64()),
            "small": pa.array([2_147_483_647] * 12, pa.int32()),
        }
    )
    assert kinds(scan_policy(table)) == [("neg", "card_number")]


def test_random_ids_are_not_card_numbers_although_one_in_ten_passes_luhn() -> None:
    rng = np.random.default_rng(7)
    ids = [f"4{n:015d}" for n in rng.integers(0, 10**15, size=2_000)]
    share = sum(luhn_ok(i) for i in ids) / len(ids)
    assert 0.05 < share < 0.2
    assert scan_policy(pa.table({"order_id": ids})) == []


@pytest.mark.parametrize(
    ("values", "kind", "examples"),
    [
        (
            ["ada@example.com", "grace.hopper@navy.mil", "write to alan+x@bletchley.org.uk now"],
            "email",
            ["a***@example.com", "g***@navy.mil", "a***@bletchley.org.uk"],
        ),
        (
            [
                "+44 20 7946 0958",
                "+14155552671",
                "(555) 123-4567",
                "555.123.4567",
                "06 12 34 56 78",
            ],
            "phone",
            ["+** ** **** **58", "+*********71", "(***) ***-**67"],
        ),
        (
            ["+49 (0) 30 1234 5678", "020 7946 0958", "+33-6-12-34-56-78"],
            "phone",
            ["+** (*) ** **** **78", "*** **** **58", "+**-*-**-**-**-78"],
        ),
        (
            ["192.168.10.20", "10.0.0.1", "GET / from 172.16.254.3: 200"],
            "ip_address",
            ["192.168.*.*", "10.0.*.*", "172.16.*.*"],
        ),
        (
            ["2001:db8::8a2e:370:7334", "fe80::1%eth0", "2001:0db8:0000:0000:0000:ff00:0042:8329"],
            "ip_address",
            ["2001:db8:*:*", "fe80::*:*", "2001:0db8:*:*"],
        ),
        (
            ["4242 4242 4242 4242", "3782-8224-6310-005", "paid with 5555555555554444"],
            "card_number",
            ["**** **** **** 4242", "**** **** **** 0005", "**** **** **** 4444"],
        ),
    ],
)
def test_each_kind_is_found_with_masked_examples(
    values: list[str], kind: str, examples: list[str]
) -> None:
    findings = scan_policy(pa.table({"col": [*values, None]}))
    assert findings == [PolicyFinding("col", kind, len(values), examples)]  # type: ignore[arg-type]


def test_look_alikes_are_not_personal_data() -> None:
    look_alikes = {
        "date": ["2011-01-01", "2012-12-31", "1999-07-04"],
        "timestamp": ["2011-01-01 00:00:00", "2011-01-01T13:45:00Z", "2024-02-29 23:59:59"],
        "time": ["12:30:45", "00:00", "23:59:59.999"],
        "mac": ["00:1A:2B:3C:4D:5E", "ff:ff:ff:ff:ff:ff", "01-23-45-67-89-ab"],
        "amount": ["1,234,567.89", "-42.5", "0.2879"],
        "range": ["50000-74999", "10-20", "1990-1999"],
        "zip": ["12345-6789", "SW1A 1AA", "75008"],
        "isbn": ["978-3-16-148410-0", "0-306-40615-2", "978-0-306-40615-7"],
        "code": ["ABC-123-456", "v2.10.3", "SKU 12 34"],
        "text": ["a@b", "user at example dot com", "@handle", "C++ std::vector"],
        "id": ["1234567890", "000123456789", "98765432101234567"],
    }
    for name, values in look_alikes.items():
        assert scan_policy(pa.table({name: values * 10})) == [], name


def test_a_meaningful_share_or_count_flags_a_column() -> None:
    def column(emails: int, rows: int) -> pa.Table:
        values = [f"user{i}@example.com" for i in range(emails)]
        return pa.table({"note": values + [f"note {i}" for i in range(rows - emails)]})

    assert scan_policy(column(4, 100)) == []  # 4 %, fewer than 10
    assert scan_policy(column(5, 100))[0].matches == 5  # 5 %
    assert scan_policy(column(9, 1_000)) == []  # 0.9 %, fewer than 10
    assert scan_policy(column(10, 1_000))[0].matches == 10  # 10 matches


def test_nulls_do_not_count_towards_the_share() -> None:
    table = pa.table({"note": ["ada@example.com", *[None] * 100, "hello", "world"]})
    assert kinds(scan_policy(table)) == [("note", "email")]


def test_listed_and_denied_names_match_any_case_and_separator() -> None:
    table = pa.table(
        {
            "FirstName": ["Ada", "Alan", None],
            "last-name": ["Lovelace", "Turing", "Hopper"],
            "SURNAME ": ["x", "y", "z"],
            "name_of_product": ["bike", "tandem", "trike"],
            "Race": ["a", "b", "c"],
            "ssn": pa.array([1, 2, 3]),
        }
    )
    findings = scan_policy(
        table,
        personal_names=["first_name", "LastName", "surname", "SSN"],
        deny_columns=["race", "ssn"],
    )
    assert findings == [
        PolicyFinding("FirstName", "listed_name", 2, ["A***"]),
        PolicyFinding("last-name", "listed_name", 3, ["L***", "T***", "H***"]),
        PolicyFinding("SURNAME ", "listed_name", 3, ["x***", "y***", "z***"]),
        PolicyFinding("Race", "denied_column", 3, ["a***", "b***", "c***"]),
        PolicyFinding("ssn", "denied_column", 3, []),
        PolicyFinding("ssn", "listed_name", 3, []),
    ]


def test_a_listed_column_is_also_scanned() -> None:
    table = pa.table({"email": ["ada@example.com", "alan@example.org"]})
    assert kinds(scan_policy(table, personal_names=["email"])) == [
        ("email", "listed_name"),
        ("email", "email"),
    ]


@pytest.mark.parametrize(
    "array",
    [
        pa.array(["ada@example.com"] * 3, pa.large_string()),
        pa.array(["ada@example.com"] * 3, pa.string_view()),
        pa.array(["ada@example.com"] * 3).dictionary_encode(),
    ],
    ids=["large_string", "string_view", "dictionary"],
)
def test_every_string_layout_is_scanned(array: pa.Array) -> None:
    assert kinds(scan_policy(pa.table({"c": array}))) == [("c", "email")]


def test_chunked_empty_and_untyped_columns() -> None:
    chunked = pa.chunked_array([["ada@example.com"], [], ["alan@example.org", None]])
    assert scan_policy(pa.table({"c": chunked}))[0].matches == 2
    assert scan_policy(pa.table({"c": pa.array([], pa.string())})) == []
    assert scan_policy(pa.table({"c": pa.array([None, None], pa.string())})) == []
    assert scan_policy(pa.table({"c": pa.array([1.5, 2.5])})) == []


def test_the_sample_is_bounded_and_deterministic() -> None:
    rows = 10_000
    first_half = [f"user{i}@example.com" if i < rows // 2 else f"row {i}" for i in range(rows)]
    table = pa.table({"contact": first_half})
    assert scan_policy(table)[0].matches == rows // 2
    sampled = scan_policy(table, sample_rows=1_000)
    assert sampled == scan_policy(table, sample_rows=1_000)
    assert sampled[0].matches == 500  # evenly spaced over the whole table
    # The sample is every tenth row; e-mails only between them are not seen.
    between = [f"user{i}@example.com" if i % 10 == 5 else f"row {i}" for i in range(rows)]
    assert scan_policy(pa.table({"contact": between}))[0].matches == rows // 10
    assert scan_policy(pa.table({"contact": between}), sample_rows=1_000) == []


def test_sample_rows_must_be_positive() -> None:
    with pytest.raises(ValidationFailed, match="pii_sample_rows"):
        scan_policy(pa.table({"c": ["x"]}), sample_rows=0)


def test_bike_sharing_has_no_personal_data() -> None:
    typed = pcsv.read_csv(BIKE_SHARING_HOURLY)
    as_text = pcsv.read_csv(
        BIKE_SHARING_HOURLY,
        convert_options=pcsv.ConvertOptions(
            column_types=dict.fromkeys(typed.column_names, pa.string())
        ),
    )
    names = DataSettings().personal_names
    assert scan_policy(typed, personal_names=names) == []
    assert scan_policy(as_text, personal_names=names) == []


@pytest.mark.skipif(
    not ADULT.is_file(), reason="the shared Adult census data is not on this machine"
)
def test_adult_census_has_no_personal_data_unless_its_columns_are_listed() -> None:
    adult = pcsv.read_csv(ADULT)
    as_text = adult.cast(pa.schema([(name, pa.string()) for name in adult.column_names]))
    names = DataSettings().personal_names
    assert scan_policy(adult, personal_names=names) == []
    assert scan_policy(as_text, personal_names=names) == []
    findings = scan_policy(adult, personal_names=["Native Country"], deny_columns=["sex"])
    assert kinds(findings) == [("sex", "denied_column"), ("native_country", "listed_name")]
    assert findings[0].matches == adult.num_rows


findings_strategy = st.builds(
    PolicyFinding,
    column=st.text(),
    kind=st.sampled_from(POLICY_KINDS),
    matches=st.integers(min_value=0),
    examples=st.lists(st.text(), max_size=3),
)


@given(findings_strategy)
def test_findings_round_trip_through_dicts(finding: PolicyFinding) -> None:
    assert PolicyFinding.from_dict(finding.to_dict()) == finding


def test_a_bad_finding_record_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="unknown policy finding kind 'ssn'"):
        PolicyFinding.from_dict({"column": "c", "kind": "ssn", "matches": 1})
    with pytest.raises(ValidationFailed, match="not a policy finding"):
        PolicyFinding.from_dict({"column": "c", "kind": "email"})
