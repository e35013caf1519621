"""Property tests: generated malformed rows, mixed with valid ones, thrown at every loader.

For each kind and format a file of valid rows and malformed ones (a required field missing, of
the wrong type or empty; chosen identical to rejected; ranks duplicated or missing; turns that
do not alternate; a line that is not JSON, not UTF-8 or not an object) is loaded twice:
- `on_bad_row: error`: a DataError names a bad row (the first line that does not parse, else
  the first bad row) with its line or field, and the fix;
- `on_bad_row: skip`: the valid rows come through exactly as they do alone, every bad row is
  reported exactly once, and kept + skipped == total: nothing is lost.

The number of generated rows tried is written to $BAD_ROWS_COUNT_FILE (default:
<tmp>/bad_rows_property_counts.json) and printed at the end of the module (`-s` shows it).
"""

from __future__ import annotations

import json
import os
import re
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framework.data import DataSourceConfig, load_examples, to_prompt_completion
from framework.data.comparisons import to_pairs
from framework.data.prompts import normalize_text, to_prompts
from framework.data.report import SourceReport
from framework.errors import DataError

SETTINGS = settings(max_examples=20, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TRIED = {"files": 0, "rows": 0, "malformed_rows": 0, "valid_rows": 0, "lost": 0}

text = st.text(string.ascii_letters + string.digits + " .,?!'", min_size=1, max_size=12).filter(
    lambda s: s.strip())
empty = st.sampled_from(["", " ", "\t", "  \n "])
wrong_type = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(),
                       st.dictionaries(st.sampled_from("ab"), st.integers(), max_size=2))


def msg(role, content):
    return {"role": role, "content": content}


def hh(*turns):
    return "".join(f"\n\n{'Human' if k % 2 == 0 else 'Assistant'}: {t}" for k, t in enumerate(turns))


@st.composite
def ranking(draw):
    k = draw(st.integers(2, 4))
    responses = [f"{draw(text)} #{i}" for i in range(k)]
    row = {"prompt": draw(text), "responses": responses}
    if draw(st.booleans()):
        row["ranks"] = draw(st.permutations(list(range(1, k + 1))))
    return row


@st.composite
def hh_pair(draw):
    prompt, a, b = draw(text), draw(text), draw(text)
    return {"chosen": hh(prompt, a + " A"), "rejected": hh(prompt, b + " B")}


# loader -> (kind, format, normalizer, valid row strategy, {field: extra bad values}, text fields)
LOADERS = {
    "demonstrations/prompt_completion": (
        "demonstrations", "prompt_completion", to_prompt_completion,
        st.builds(lambda p, c: {"prompt": p, "completion": c}, text, text), ("prompt", "completion")),
    "demonstrations/messages": (
        "demonstrations", "messages", to_prompt_completion,
        st.builds(lambda p, c: {"messages": [msg("user", p), msg("assistant", c)]}, text, text),
        ("messages",)),
    "demonstrations/alpaca": (
        "demonstrations", "alpaca", to_prompt_completion,
        st.builds(lambda i, x, o: {"instruction": i, "input": x, "output": o}, text,
                  st.one_of(st.just(""), text), text), ("instruction", "output")),
    "demonstrations/hh": (
        "demonstrations", "hh", to_prompt_completion, hh_pair(), ("chosen",)),
    "comparisons/pairs": (
        "comparisons", "pairs", to_pairs,
        st.builds(lambda p, c, r: {"prompt": p, "chosen": c + " A", "rejected": r + " B"},
                  text, text, text), ("prompt", "chosen", "rejected")),
    "comparisons/ranking": (
        "comparisons", "ranking", to_pairs, ranking(), ("prompt", "responses")),
    "comparisons/hh": (
        "comparisons", "hh", to_pairs, hh_pair(), ("chosen", "rejected")),
    "prompts/prompt": (
        "prompts", "prompt", to_prompts, st.builds(lambda p: {"prompt": p}, text), ("prompt",)),
    "prompts/messages": (
        "prompts", "messages", to_prompts,
        st.builds(lambda p: {"messages": [msg("user", p)]}, text), ("messages",)),
    "text/text": (
        "text", "text", normalize_text, st.builds(lambda t: {"text": t}, text), ("text",)),
}


@st.composite
def malformed(draw, loader: str, valid_row):
    """One bad line (bytes) made from a valid row; each mutation is bad on its own."""
    _, fmt, _, _, fields = LOADERS[loader]
    row = dict(draw(valid_row))
    field = draw(st.sampled_from(fields))
    mutations = ["missing", "wrong type", "empty", "not JSON", "not UTF-8", "not an object"]
    if fmt == "pairs" or loader == "comparisons/hh":
        mutations.append("identical")
    if fmt == "ranking":
        mutations += ["bad ranks"]
    if fmt == "messages":
        mutations += ["roles"]
    how = draw(st.sampled_from(mutations))
    if how == "missing":
        row.pop(field)
    elif how == "wrong type":
        row[field] = draw(wrong_type)
    elif how == "empty":
        value = row[field]
        if isinstance(value, list) and fmt == "messages":
            row[field] = [msg(m["role"], draw(empty)) for m in value]
        elif isinstance(value, list):
            row[field] = [draw(empty)] + value[1:]
        else:
            row[field] = draw(empty)
    elif how == "identical":
        row["rejected"] = row["chosen"]
    elif how == "bad ranks":
        k = len(row["responses"])
        row["ranks"] = draw(st.one_of(
            st.lists(st.integers(1, k), min_size=k, max_size=k).filter(lambda r: len(set(r)) < k),
            st.lists(st.integers(1, k), min_size=1, max_size=k - 1, unique=True),
            st.just([r + 1 for r in range(1, k + 1)]),
        ))
    elif how == "roles":
        turns = row["messages"]
        row["messages"] = [turns[0], msg("user", draw(text)), *turns[1:]] if len(turns) > 1 else \
            [msg("assistant", draw(text)), *turns]
    data = json.dumps(row).encode()
    if how == "not JSON":
        return data[: draw(st.integers(1, len(data) - 1))] + b"\n"
    if how == "not UTF-8":
        cut = draw(st.integers(1, len(data) - 1))
        return data[:cut] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xe9", b"\x80"])) + data[cut:] + b"\n"
    if how == "not an object":
        return draw(st.sampled_from([b"[]", b"1", b'"row"', b"null", b"true", b"[1, 2]"])) + b"\n"
    return data + b"\n"


@st.composite
def files(draw, loader: str):
    """[(is_bad, line bytes)], with at least one valid and one malformed row."""
    valid_row = LOADERS[loader][3]
    good = st.builds(lambda r: (False, json.dumps(r).encode() + b"\n"), valid_row)
    bad = st.builds(lambda b: (True, b), malformed(loader, valid_row))
    lines = draw(st.lists(st.one_of(good, bad), min_size=1, max_size=8))
    lines.insert(draw(st.integers(0, len(lines))), draw(good))
    if not any(is_bad for is_bad, _ in lines):
        lines.insert(draw(st.integers(0, len(lines))), draw(bad))
    return lines


def load(loader, path, on_bad_row="error", report=None):
    kind, fmt, normalize, _, _ = LOADERS[loader]
    source = DataSourceConfig(kind=kind, path=str(path), format=fmt, on_bad_row=on_bad_row)
    return load_examples(source, "data.p", normalize, report=report)[0]


@pytest.mark.parametrize("loader", list(LOADERS))
def test_malformed_rows_are_named_or_skipped_never_lost(loader):
    @SETTINGS
    @given(lines=files(loader))
    def check(lines):
        with tempfile.TemporaryDirectory() as tmp:
            mixed = Path(tmp) / "mixed.jsonl"
            mixed.write_bytes(b"".join(data for _, data in lines))
            only_good = Path(tmp) / "good.jsonl"
            only_good.write_bytes(b"".join(data for is_bad, data in lines if not is_bad))
            bad_rows = [i for i, (is_bad, _) in enumerate(lines) if is_bad]

            with pytest.raises(DataError) as caught:
                load(loader, mixed)
            # A bad row, named by its row (0-based) and its line or field; lines that do not
            # parse are found in the reading pass, so they come before rows that do.
            message = str(caught.value)
            named = int(re.search(r"row (\d+)(?: \(|, )0-based", message).group(1))
            assert named in bad_rows, message
            assert f"line {named + 1} " in message or "field '" in message, message
            assert "Fix: " in message

            report = SourceReport("data")
            kept = load(loader, mixed, "skip", report)
            expected = list(load(loader, only_good))
            good_rows = [i for i, (is_bad, _) in enumerate(lines) if not is_bad]
            for example in expected:  # a comparison's group is its prompt's first source row
                if "group" in example:
                    example["group"] = good_rows[example["group"]]
            assert list(kept) == expected  # valid rows unchanged, in order
            skipped = [r["row"] for r in report.skipped]
            assert sorted(skipped) == bad_rows  # each bad row exactly once
            kept_rows = sorted(set(report.origins["train"]))
            assert len(kept_rows) + len(skipped) == len(lines)  # nothing lost
            assert all(r["reason"] for r in report.skipped)

        TRIED["files"] += 1
        TRIED["rows"] += len(lines)
        TRIED["malformed_rows"] += len(bad_rows)
        TRIED["valid_rows"] += len(lines) - len(bad_rows)
        TRIED["lost"] += len(lines) - len(kept_rows) - len(skipped)

    check()


@pytest.fixture(scope="module", autouse=True)
def count_tried():
    yield
    out = Path(os.environ.get("BAD_ROWS_COUNT_FILE",
                              Path(tempfile.gettempdir()) / "bad_rows_property_counts.json"))
    out.write_text(json.dumps({**TRIED, "loaders": len(LOADERS)}, indent=1))
    print(f"\nproperty tests: {TRIED['malformed_rows']} generated malformed rows (and "
          f"{TRIED['valid_rows']} valid) in {TRIED['files']} files across {len(LOADERS)} "
          f"loaders; lost: {TRIED['lost']}. Written to {out}")
