from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from mlcycle.ids import new_id

CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def test_ids_are_26_crockford_characters() -> None:
    value = new_id()
    assert len(value) == 26
    assert set(value) <= CROCKFORD


@given(st.integers(min_value=2, max_value=500))
def test_ids_sort_in_creation_order(count: int) -> None:
    ids = [new_id() for _ in range(count)]
    assert ids == sorted(ids)
    assert len(set(ids)) == count


def test_ids_from_many_threads_are_unique() -> None:
    made: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        batch = [new_id() for _ in range(2_000)]
        with lock:
            made.extend(batch)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 16_000
