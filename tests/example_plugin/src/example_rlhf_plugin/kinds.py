"""What this package adds to the framework's open registries: an artifact kind (produced by the
`word_counts` stage) and a data format (question/answer demonstrations). Both are plain objects
named by entry points in pyproject.toml; nothing in the framework is edited."""

from framework.artifacts import DEMONSTRATIONS, ArtifactKind
from framework.data.formats import DataFormat
from framework.data.messages import check_text

WORD_COUNTS = ArtifactKind("word_counts", "a JSON file: how often each word occurs in responses")


def _qa_row(row: dict, where: str, i: int):
    """A demonstrations row: (prompt messages, response text)."""
    question = check_text(row["question"], where, i, "question")
    answer = check_text(row["answer"], where, i, "answer")
    return [{"role": "user", "content": question}], answer


QA = DataFormat(DEMONSTRATIONS, "qa", ("question", "answer"), _qa_row)
