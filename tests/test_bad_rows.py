"""Every kind of bad row the data loaders reject, one table: with `on_bad_row: error` (the
default) the message names the file, the row or line, the field and the fix; with `skip` the
row is left out and reported once, with its reason, and the good rows come through."""

from __future__ import annotations

import json

import pytest

from framework.data import DataSourceConfig, check_source, load_examples, to_prompt_completion
from framework.data.comparisons import to_pairs
from framework.data.prompts import normalize_text, to_prompts
from framework.data.report import DataReport, SourceReport
from framework.errors import ConfigError, DataError

GOOD_DEMO = {"prompt": "Capital of France?", "completion": "Paris."}
GOOD_PAIR = {"prompt": "Pick one.", "chosen": "This one.", "rejected": "That one."}
GOOD_RANKING = {"prompt": "Rank these.", "responses": ["a", "b", "c"], "ranks": [2, 1, 3]}


def line(row) -> bytes:
    return json.dumps(row).encode() + b"\n"


# kind -> (data kind, normalizer, the bad line (bytes), a good row, what the error must say)
KINDS = {
    "missing field": (
        "demonstrations", to_prompt_completion, line({"prompt": "Hi?"}), GOOD_DEMO,
        r"row 1 \(0-based\), field 'completion': is missing\. Fix: give every row a 'completion'",
    ),
    "wrong type": (
        "demonstrations", to_prompt_completion, line({"prompt": "Hi?", "completion": 42}),
        GOOD_DEMO, r"row 1 \(0-based\), field 'completion': expected a string, got int 42\. Fix:",
    ),
    "empty prompt": (
        "demonstrations", to_prompt_completion, line({"prompt": "  ", "completion": "x"}),
        GOOD_DEMO, r"row 1 \(0-based\), field 'prompt': is empty\. Fix: give non-empty text",
    ),
    "empty response": (
        "comparisons", to_pairs, line({**GOOD_PAIR, "chosen": ""}), GOOD_PAIR,
        r"row 1 \(0-based\), field 'chosen': is empty\. Fix:",
    ),
    "chosen identical to rejected": (
        "comparisons", to_pairs, line({**GOOD_PAIR, "rejected": GOOD_PAIR["chosen"]}), GOOD_PAIR,
        r"row 1 \(0-based\), field 'rejected': identical to chosen, .* Fix: remove the row",
    ),
    "ranking with duplicate ranks": (
        "comparisons", to_pairs, line({**GOOD_RANKING, "ranks": [1, 1, 2]}), GOOD_RANKING,
        r"row 1 \(0-based\), field 'ranks': \[1, 1, 2\] is not a permutation of 1\.\.3\. Fix:",
    ),
    "ranking with missing ranks": (
        "comparisons", to_pairs, line({**GOOD_RANKING, "ranks": [1, 2]}), GOOD_RANKING,
        r"row 1 \(0-based\), field 'ranks': \[1, 2\] is not a permutation of 1\.\.3\. Fix:",
    ),
    "ranking of fewer than 2 responses": (
        "comparisons", to_pairs, line({"prompt": "Rank these.", "responses": ["only one"]}),
        GOOD_RANKING, r"row 1 \(0-based\), field 'responses': expected a list of at least 2 "
                      r"responses, got \['only one'\]\. Fix: give K >= 2 responses",
    ),
    "line not valid JSON": (
        "demonstrations", to_prompt_completion, b'{"prompt": "Hi?", "completion": "x"\n',
        GOOD_DEMO, r"bad\.jsonl, line 2 \(row 1, 0-based\): not valid JSON: Expecting ',' "
                   r"delimiter at character 36.* Fix: write one JSON object per line",
    ),
    "text not valid UTF-8": (
        "prompts", to_prompts, b'{"prompt": "caf\xe9?"}\n', {"prompt": "Hello?"},
        r"bad\.jsonl, line 2 \(row 1, 0-based\): not valid UTF-8: byte 0xe9 at byte 15 of the "
        r"line \(byte 36 of the file\)\. Fix: save the file as UTF-8",
    ),
    "roles do not alternate": (
        "demonstrations", to_prompt_completion,
        line({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                           {"role": "assistant", "content": "c"}]}),
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "c"}]},
        r"row 1 \(0-based\), field 'messages\[1\]\.role': expected 'assistant' but got 'user'\. "
        r"Fix: .* alternate",
    ),
    "not a JSON object": (
        "text", normalize_text, b'["just", "a", "list"]\n', {"text": "Some text."},
        r"line 2 \(row 1, 0-based\): expected a JSON object, got an array.* Fix:",
    ),
}


def write(tmp_path, bad: bytes, good: dict):
    """good, bad, good: the bad row is row 1 (line 2)."""
    path = tmp_path / "bad.jsonl"
    path.write_bytes(line(good) + bad + line(good))
    return path


@pytest.mark.parametrize("kind", list(KINDS))
def test_bad_row_is_an_error_naming_file_row_field_and_fix(tmp_path, kind):
    data_kind, normalize, bad, good, message = KINDS[kind]
    source = DataSourceConfig(kind=data_kind, path=str(write(tmp_path, bad, good)))
    with pytest.raises(DataError, match=message) as caught:
        load_examples(source, "data.x", normalize)
    assert "bad.jsonl" in str(caught.value)  # the file, always


@pytest.mark.parametrize("kind", list(KINDS))
def test_bad_row_is_skipped_and_reported_once(tmp_path, kind):
    data_kind, normalize, bad, good, _ = KINDS[kind]
    path = write(tmp_path, bad, good)
    source = DataSourceConfig(kind=data_kind, path=str(path), on_bad_row="skip")
    report = DataReport()
    train, _ = load_examples(source, "data.x", normalize, report=report.source("data"))
    expected = load_examples(DataSourceConfig(kind=data_kind, path=str(write(
        tmp_path, b"", good))), "data.x", normalize)[0]
    assert list(train) == list(expected)  # the two good rows, unchanged
    assert report.counts() == {"data": 1}
    (record,) = report.skipped
    assert record["row"] == 1 and record["source"] == "data" and record["reason"]
    assert report.sources["data"].origins["train"] == [
        o for o in report.sources["data"].origins["train"] if o in (0, 2)]
    written = report.write(tmp_path / "stage")
    assert [json.loads(x) for x in written.read_text().splitlines()] == [record]


def test_the_table_covers_every_kind_the_issue_names():
    named = {"missing field", "wrong type", "empty prompt", "empty response",
             "chosen identical to rejected", "ranking with duplicate ranks",
             "ranking with missing ranks", "line not valid JSON", "text not valid UTF-8",
             "roles do not alternate"}
    assert named <= set(KINDS)
    # the tenth kind of the issue, an example longer than max_length, is a stage check:
    # test_example_longer_than_max_length below.


@pytest.fixture(scope="module")
def tokenizer():
    from framework.models import load_tokenizer

    return load_tokenizer("embedded:smollm2-135m-instruct")


@pytest.mark.parametrize("on_bad_row", ["error", "skip"])
def test_example_longer_than_max_length(tmp_path, tokenizer, on_bad_row):
    from framework.trl.lengths import check_lengths

    long_prompt = " ".join(["word"] * 60)
    path = tmp_path / "demos.jsonl"
    path.write_bytes(line(GOOD_DEMO) + line({"prompt": long_prompt, "completion": "Yes."})
                     + line(GOOD_DEMO))
    source = DataSourceConfig(path=str(path), on_bad_row=on_bad_row)
    report = SourceReport("data")
    train, evaluation = load_examples(source, "data.x", to_prompt_completion, report=report)
    if on_bad_row == "error":
        with pytest.raises(DataError, match=r"data\.x: 1 of 3 train rows have no response tokens "
                           r"left after truncation to max_length=48 .*Source rows, 0-based: \[1\]\. Raise "
                           r"args\.max_length.*on_bad_row: skip"):
            check_lengths(tokenizer, 48, train, evaluation, report, "data.x")
        return
    kept, _ = check_lengths(tokenizer, 48, train, evaluation, report, "data.x")
    assert len(kept) == 2 and report.origins["train"] == [0, 2]
    (record,) = report.skipped
    assert record["row"] == 1 and record["field"] == "prompt" and "max_length=48" in record["reason"]


@pytest.mark.parametrize("on_bad_row", ["error", "skip"])
def test_response_that_max_length_would_cut(tmp_path, tokenizer, on_bad_row):
    """The prompt fits but prompt + response does not: TRL would cut the response silently."""
    from framework.trl.lengths import check_lengths, full_length

    long_answer = " ".join(["word"] * 60)
    path = tmp_path / "demos.jsonl"
    path.write_bytes(line(GOOD_DEMO) + line(GOOD_DEMO)
                     + line({"prompt": "Say many words.", "completion": long_answer}))
    source = DataSourceConfig(path=str(path), on_bad_row=on_bad_row)
    report = SourceReport("data")
    train, evaluation = load_examples(source, "data.x", to_prompt_completion, report=report)
    n = full_length(tokenizer, train[2]["prompt"], train[2]["completion"])
    assert n > 48 and full_length(tokenizer, train[0]["prompt"], train[0]["completion"]) <= 48
    if on_bad_row == "error":
        with pytest.raises(DataError, match=(
                rf"data\.x: 1 of 3 train rows are longer than max_length=48 tokens \(prompt \+ "
                rf"response, chat template included: \[{n}\]\), so training would silently cut "
                rf"the end of their responses \(rows, 0-based, of the train split: \[2\]\)\. "
                rf"Source rows, 0-based: \[2\]\. Raise args\.max_length.*on_bad_row: skip")):
            check_lengths(tokenizer, 48, train, evaluation, report, "data.x")
        return
    kept, _ = check_lengths(tokenizer, 48, train, evaluation, report, "data.x")
    assert len(kept) == 2 and report.origins["train"] == [0, 1]
    (record,) = report.skipped
    assert record["row"] == 2 and record["field"] == "completion"
    assert f"prompt + response are {n} tokens" in record["reason"]
    # packing cuts sequences into chunks on purpose: nothing to report then
    again = SourceReport("data", on_bad_row="error")
    assert len(check_lengths(tokenizer, 48, train, None, again, "data.x", whole=False)[0]) == 3


@pytest.mark.parametrize("on_bad_row", ["error", "skip"])
def test_prompt_longer_than_max_prompt_length(tmp_path, tokenizer, on_bad_row):
    from framework.data.config import data_artifact
    from framework.data.report import DataReport
    from framework_plugins.optimizers.ppo.data import check_prompt_lengths, load_prompts

    path = tmp_path / "prompts.jsonl"
    path.write_bytes(line({"prompt": "Hi?"}) + line({"prompt": " ".join(["word"] * 80)})
                     + line({"prompt": "Hello?"}))
    artifact = data_artifact(DataSourceConfig(kind="prompts", path=str(path), on_bad_row=on_bad_row))
    origins = SourceReport("prompts")
    prompts = load_prompts(artifact, report=origins)
    stage_report = DataReport()
    if on_bad_row == "error":
        with pytest.raises(DataError, match=(
                r"prompts: 1 of 3 training prompts of '.*prompts\.jsonl' are longer than "
                r"optimizer\.params\.max_prompt_length=32 tokens .* \(source rows, 0-based: "
                r"\[1\]\)\. Raise max_prompt_length")):
            check_prompt_lengths(prompts, tokenizer, 32, artifact, origins, stage_report)
        return
    kept = check_prompt_lengths(prompts, tokenizer, 32, artifact, origins, stage_report)
    assert [p.text for p in kept] == ["Hi?", "Hello?"]
    assert stage_report.counts() == {"prompts": 1}
    (record,) = stage_report.skipped
    assert record["row"] == 1 and "max_prompt_length=32" in record["reason"]


def test_over_long_pairs_are_skipped_with_their_prompt_group():
    import datasets

    from framework_plugins.stages.reward_model.stage import _check_nothing_dropped

    pairs = datasets.Dataset.from_dict({"group": [0, 0, 2, 3]})
    prepared = pairs.select([0, 2, 3])  # TRL dropped the second pair of row 0's prompt
    report = SourceReport("data", on_bad_row="skip")
    report.origins["train"] = [0, 1, 2, 3]  # rows 0 and 1 share a prompt (group 0)
    with pytest.raises(DataError, match=r"1 train pair\(s\) exceed max_length=8 .* row\(s\) 0\."):
        _check_nothing_dropped(pairs, prepared, 8, "stages.rm", "train")
    kept, n = _check_nothing_dropped(pairs, prepared, 8, "stages.rm", "train", report)
    assert n == 2 and list(kept["group"]) == [2, 3]
    assert [r["row"] for r in report.skipped] == [0, 1]


def test_json_list_file_with_a_bad_item_and_a_broken_list(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([GOOD_DEMO, "oops", GOOD_DEMO]))
    with pytest.raises(DataError, match=r"rows\.json, row 1 \(0-based\): list item 1 is a string"):
        load_examples(DataSourceConfig(path=str(path)), "data.x", to_prompt_completion)
    report = SourceReport("data")
    train, _ = load_examples(DataSourceConfig(path=str(path), on_bad_row="skip"), "data.x",
                             to_prompt_completion, report=report)
    assert len(train) == 2 and len(report.skipped) == 1
    path.write_text('[{"prompt": "a", "completion": "b"},\n {"prompt": }]')
    with pytest.raises(DataError, match=r"rows\.json, line 2: not valid JSON: Expecting value"):
        load_examples(DataSourceConfig(path=str(path), on_bad_row="skip"), "data.x",
                      to_prompt_completion)


def test_csv_with_bad_utf8_names_the_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"text\nhello\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"d\.csv, line 3: not valid UTF-8: byte 0xe9 at byte 3"):
        load_examples(DataSourceConfig(kind="text", path=str(path)), "data.x", normalize_text)


def test_rows_keep_their_exact_json_values(tmp_path):
    """pyarrow would read ranks [1, 2] as [1.0, 2.0] next to a row with [1.5, 2]; not here."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(line(GOOD_RANKING) + line({**GOOD_RANKING, "ranks": [1.5, 2, 3]}))
    report = SourceReport("data")
    source = DataSourceConfig(kind="comparisons", path=str(path), on_bad_row="skip")
    train, _ = load_examples(source, "data.x", to_pairs, report=report)
    assert len(train) == 3 and [r["row"] for r in report.skipped] == [1]


def test_all_rows_bad_is_an_error_even_when_skipping(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(line({"prompt": "", "completion": "x"}) + b"{\n")
    with pytest.raises(DataError, match=r"no usable rows: all 1 were bad and skipped"):
        load_examples(DataSourceConfig(path=str(path), on_bad_row="skip"), "data.x",
                      to_prompt_completion, report=SourceReport("data"))


def test_skip_without_a_report_logs_every_skipped_row(tmp_path, caplog):
    path = write(tmp_path, line({"prompt": "Hi?"}), GOOD_DEMO)
    train, _ = load_examples(DataSourceConfig(path=str(path), on_bad_row="skip"), "data.x",
                             to_prompt_completion)
    assert len(train) == 2
    assert "skipped bad row" in caplog.text and "'row': 1" in caplog.text


def test_on_bad_row_is_checked():
    with pytest.raises(ConfigError, match=r"data\.x\.on_bad_row: 'ignore' is not a choice\. Use "
                                          r"`error` .* or `skip`"):
        check_source(DataSourceConfig(on_bad_row="ignore"), "data.x")
