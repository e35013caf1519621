"""Loading rows: builtin names, local files and directories, renames, limits, eval splits."""

from __future__ import annotations

import json

import pytest

from framework.data import DataSourceConfig, check_source, load_examples, load_rows, split_by_group
from framework.data.prompts import to_prompts
from framework.errors import ConfigError, DataError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path



@pytest.fixture
def ten_rows(tmp_path):
    return write_jsonl(tmp_path / "ten.jsonl", [{"q": f"q{i}", "a": f"a{i}"} for i in range(10)])


def test_local_file_renames_and_limit(ten_rows):
    source = DataSourceConfig(path=str(ten_rows), columns={"q": "prompt"}, limit=3)
    train, evaluation = load_rows(source, "data.x")
    assert train.column_names == ["prompt", "a"]
    assert list(train["prompt"]) == ["q0", "q1", "q2"]
    assert evaluation is None


def test_directory_with_named_splits(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": "t1"}, {"text": "t2"}])
    write_jsonl(tmp_path / "test.jsonl", [{"text": "e1"}])
    source = DataSourceConfig(kind="text", path=str(tmp_path), eval_split="test")
    train, evaluation = load_rows(source, "data.x")
    assert list(train["text"]) == ["t1", "t2"] and list(evaluation["text"]) == ["e1"]
    with pytest.raises(DataError, match=r"no split 'validation'.*train, test|no split 'validation'.*test, train"):
        load_rows(DataSourceConfig(kind="text", path=str(tmp_path), eval_split="validation"), "data.x")


def test_csv_and_parquet(tmp_path):
    (tmp_path / "d.csv").write_text("text\nhello\nworld\n")
    assert list(load_rows(DataSourceConfig(kind="text", path=str(tmp_path / "d.csv")), "d")[0]["text"]) == [
        "hello", "world"]
    import datasets

    datasets.Dataset.from_dict({"text": ["a", "b", "c"]}).to_parquet(str(tmp_path / "d.parquet"))
    assert len(load_rows(DataSourceConfig(kind="text", path=str(tmp_path / "d.parquet")), "d")[0]) == 3


def test_eval_fraction_is_deterministic_and_disjoint(ten_rows):
    source = DataSourceConfig(path=str(ten_rows), eval_fraction=0.3, seed=7)
    train, evaluation = load_rows(source, "data.x")
    train2, evaluation2 = load_rows(source, "data.x")
    assert list(evaluation["q"]) == list(evaluation2["q"]) and list(train["q"]) == list(train2["q"])
    assert len(evaluation) == 3 and len(train) == 7
    assert sorted(list(train["q"]) + list(evaluation["q"])) == sorted(f"q{i}" for i in range(10))
    other_seed = load_rows(DataSourceConfig(path=str(ten_rows), eval_fraction=0.3, seed=8), "d")[1]
    assert list(other_seed["q"]) != list(evaluation["q"])  # the seed matters


def test_split_by_group_keeps_groups_together(tmp_path):
    import datasets

    rows = datasets.Dataset.from_dict(
        {"prompt": ["a", "a", "b", "c", "c", "c", "d"], "n": list(range(7))}
    )
    train, evaluation = split_by_group(rows, 0.5, seed=0, group_key="prompt")
    assert not set(train["prompt"]) & set(evaluation["prompt"])
    assert len(set(evaluation["prompt"])) == 2  # half of the 4 groups
    assert len(train) + len(evaluation) == 7


def test_split_needs_two_groups():
    import datasets

    rows = datasets.Dataset.from_dict({"prompt": ["a", "a"]})
    with pytest.raises(DataError, match="1 group"):
        split_by_group(rows, 0.5, 0, "prompt", "data.c")


def test_load_examples_reports_source_row_numbers(tmp_path):
    rows = [{"prompt": f"p{i}"} for i in range(6)] + [{"prompt": ""}]
    source = DataSourceConfig(kind="prompts", path=str(write_jsonl(tmp_path / "p.jsonl", rows)),
                              eval_fraction=0.5)
    with pytest.raises(DataError, match=r"data\.p \(.*p\.jsonl\): row 6 \(0-based\), field 'prompt': is empty"):
        load_examples(source, "data.p", to_prompts)


def test_load_examples_groups_by_normalized_column(tmp_path):
    rows = [{"prompt": p} for p in ["x", "x", "y", "y", "z", "w"]]
    source = DataSourceConfig(kind="prompts", path=str(write_jsonl(tmp_path / "p.jsonl", rows)),
                              eval_fraction=0.5, seed=3)
    train, evaluation = load_examples(source, "data.p", to_prompts, group_key="prompt")
    as_text = lambda ds: {m[0]["content"] for m in ds["prompt"]}
    assert not as_text(train) & as_text(evaluation)


def test_check_source_messages(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.d\.path: unknown builtin data set 'nope'\. Available:"):
        check_source(DataSourceConfig(path="builtin:nope"), "data.d")
    with pytest.raises(ConfigError, match=r"data\.d\.path: '.*missing\.jsonl' does not exist"):
        check_source(DataSourceConfig(path=str(tmp_path / "missing.jsonl")), "data.d")
    with pytest.raises(ConfigError, match=r"data\.d\.format: 'pairs' is not a format of demonstrations data\. Use one of: auto, messages, prompt_completion, alpaca"):
        check_source(DataSourceConfig(path="org/name", format="pairs"), "data.d")
    with pytest.raises(ConfigError, match=r"data\.d\.kind: 'model' is not a data kind"):
        check_source(DataSourceConfig(kind="model", path="org/name"), "data.d")
    with pytest.raises(ConfigError, match=r"data\.d\.eval_fraction: 1\.0 is outside \[0, 1\)"):
        check_source(DataSourceConfig(path="org/name", eval_fraction=1.0), "data.d")
    check_source(DataSourceConfig(path="org/name", eval_fraction=0.1), "data.d")  # a hub id: fine


def test_single_file_has_only_train_split(ten_rows):
    with pytest.raises(ConfigError, match=r"data\.d\.eval_split: .* single file"):
        check_source(DataSourceConfig(path=str(ten_rows), eval_split="test"), "data.d")


def test_rename_of_missing_column(ten_rows):
    with pytest.raises(DataError, match=r"data\.d\.columns: cannot rename 'question'.*columns are: q, a"):
        load_rows(DataSourceConfig(path=str(ten_rows), columns={"question": "prompt"}), "data.d")


def test_builtin_sets_load_when_shipped():
    from framework.data import builtin_names

    for name in builtin_names():
        train, _ = load_rows(DataSourceConfig(kind="text", path=f"builtin:{name}"), "data.b")
        assert len(train) > 0, name


def test_hub_failure_names_the_source():
    # Offline in tests (conftest), so the hub cannot be reached; the error still says what failed.
    source = DataSourceConfig(path="nobody-xyz/no-such-set", subset="main")
    with pytest.raises(DataError, match=r"data\.d\.path: could not load split 'train' of 'nobody-xyz/no-such-set' \(subset 'main'\)"):
        load_rows(source, "data.d")


def test_compressed_files_are_read_and_archives_named(tmp_path):
    """gzip, bz2 and xz files are read as they are; an archive is an error naming it, never
    ignored or misread as text."""
    import bz2
    import gzip
    import lzma

    from framework.data import DataSourceConfig, check_source, load_rows
    from framework.errors import ConfigError, DataError

    rows = [{"prompt": f"Q{i}", "completion": f"A{i}"} for i in range(3)]
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    for suffix, module in ((".gz", gzip), (".bz2", bz2), (".xz", lzma)):
        path = tmp_path / f"alone.jsonl{suffix}"
        path.write_bytes(module.compress(text))
        source = DataSourceConfig(kind="demonstrations", path=str(path))
        check_source(source, "data.d")
        train, _ = load_rows(source, "data.d")
        assert train["prompt"] == ["Q0", "Q1", "Q2"], suffix
    # beside train.jsonl in a directory: read as part of its split, not skipped in silence
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "train.jsonl").write_bytes(text)
    (folder / "train-more.jsonl.gz").write_bytes(gzip.compress(
        (json.dumps({"prompt": "Q9", "completion": "A9"}) + "\n").encode()))
    train, _ = load_rows(DataSourceConfig(kind="demonstrations", path=str(folder)), "data.d")
    assert sorted(train["prompt"]) == ["Q0", "Q1", "Q2", "Q9"]
    # CSV compressed too
    csv = tmp_path / "rows.csv.gz"
    csv.write_bytes(gzip.compress(b"prompt,completion\nhello,world\n"))
    train, _ = load_rows(DataSourceConfig(kind="demonstrations", path=str(csv)), "data.d")
    assert train["prompt"] == ["hello"]
    # archives: named, with the fix
    (folder / "extra.zip").write_bytes(b"PK\x03\x04")
    with pytest.raises((ConfigError, DataError), match=r"holds archive\(s\) 'extra\.zip', which "
                                                       r"are not read; extract them"):
        check_source(DataSourceConfig(kind="demonstrations", path=str(folder)), "data.d")
    zipped = tmp_path / "rows.zip"
    zipped.write_bytes(b"PK\x03\x04")
    with pytest.raises((ConfigError, DataError), match=r"is a \.zip archive, which is not read"):
        check_source(DataSourceConfig(kind="demonstrations", path=str(zipped)), "data.d")
