"""What bounds one storing chunk: how many instances it describes and what describing them
is estimated to cost, and the instance heads its threads hold in /tmp at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from crafted import with_several

from pacs_validator.dicom.validation import validate_instance
from pacs_validator.flow.judging import CHUNK_ESTIMATED_BYTES, chunk_file, chunks_of, split
from pacs_validator.flow.receiving import storing_fields
from pacs_validator.flow.storing import ByteBudget


def test_chunks_stop_at_their_size_and_at_their_weight_and_a_heavy_item_goes_alone() -> None:
    assert split([], 3) == [[]]
    assert split(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    weights = [1, 1, 5, 1, 1, 1, 9, 1]
    assert split(weights, 10, weight=lambda w: w, budget=6) == \
        [[1, 1], [5, 1], [1, 1], [9], [1]]
    assert split([1] * 5, 2, weight=lambda w: w, budget=100) == [[1, 1], [1, 1], [1]]


def test_heads_held_at_once_stay_within_the_budget_and_a_larger_one_is_held_alone() -> None:
    budget = ByteBudget(100)
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def hold(size: int) -> None:
        with budget.holding(size):
            with lock:
                seen.append((size, budget.held))
            time.sleep(0.01)  # the claims overlap

    sizes = [40] * 12 + [250] + [40] * 12
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(hold, sizes))

    assert len(seen) == len(sizes)
    small = [held for size, held in seen if size == 40]
    assert max(small) == 80  # two fit; a third would pass the budget
    assert [held for size, held in seen if size == 250] == [250]
    assert budget.held == 0


def test_the_judge_cuts_chunks_of_files_heavy_to_describe_within_the_estimated_budget(
        mutate, config) -> None:
    """Files each within every limit, but with 200,000 values (a quarter of the estimate a
    chunk may hold): the judge stops a chunk before its estimated cost passes the budget,
    where their few data elements would have let all ten in one."""
    path = mutate("CT_small.dcm", with_several(values=200_000))
    result, parsed = validate_instance(path, config)
    assert result.status == 200
    record = {**result.to_record(), "key": "incoming/heavy.dcm", **storing_fields(parsed)}
    files = [chunk_file({**record, "name": f"{index}.dcm"}, preview=False)
             for index in range(10)]

    chunks = chunks_of(files, 500)

    assert len(chunks) > 1
    costs = [sum(file.estimated_bytes for file in chunk) for chunk in chunks]
    assert all(cost <= CHUNK_ESTIMATED_BYTES for cost in costs)
    assert all(cost + parsed.estimated_bytes > CHUNK_ESTIMATED_BYTES for cost in costs[:-1])
    assert [file.name for chunk in chunks for file in chunk] == [f.name for f in files]
