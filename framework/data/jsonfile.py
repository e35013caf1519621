"""Local JSON data files read row by row, so that a bad line is named, not an opaque error.

`datasets` would hand a bad .jsonl line or bad bytes to pyarrow, which fails for the whole file
("JSON parse error ... in row 1", a UnicodeDecodeError with no line), and its type inference
quietly changes values (ints in a column that also holds a float become floats). Here each line
is decoded and parsed once, in a single pass; a bad one becomes a `BadRowError` naming the file,
the 1-based line and what is wrong, and the rows keep their exact JSON values.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Callable

import datasets

from framework.data.report import BadRowError
from framework.errors import DataError

_BOM = b"\xef\xbb\xbf"
_UTF8_FIX = (
    "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.jsonl > out.jsonl` if it is "
    "Latin-1), or remove that line"
)
_JSONL_FIX = "write one JSON object per line, e.g. {\"prompt\": \"...\", \"completion\": \"...\"}"


# compressed data files are read through the standard library's decompressors
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}
ARCHIVES = (".zip", ".zst", ".7z", ".tar", ".tgz", ".lz4", ".br")  # not read: named as such


def data_suffix(path: Path) -> tuple[str, str | None]:
    """(the data extension, the compression module or None): train.jsonl.gz -> (.jsonl, gzip)."""
    suffix = path.suffix.lower()
    if suffix in COMPRESSIONS:
        return Path(path.stem).suffix.lower(), COMPRESSIONS[suffix]
    return suffix, None


def open_data(path: Path):
    """A binary file object of the file's data, decompressed if it is compressed."""
    module = data_suffix(path)[1]
    if module is None:
        return open(path, "rb")
    return importlib.import_module(module).open(path, "rb")


def read_json_rows(
    path: Path, where: str, bad: Callable[[BadRowError], None], first_row: int = 0
) -> tuple[list[dict], list[int], int]:
    """(rows, their source row numbers, the next row number) of a .jsonl file (one object a line; blank lines are
    not rows), or of a .json file holding a list of objects (else read as JSON lines).

    Row numbers count every non-blank line (or list item) from `first_row`, bad ones too, so
    they stay the source's own when bad rows are skipped. Each bad line goes to `bad`, which
    raises (on_bad_row: error) or records it and lets reading go on (skip).
    """
    with open_data(path) as f:
        start = f.read(64).lstrip(_BOM).lstrip()
    if data_suffix(path)[0] == ".json" and start.startswith(b"["):
        return _read_list(path, where, bad, first_row)
    return _read_lines(path, where, bad, first_row)


def _read_lines(path: Path, where: str, bad, first_row: int) -> tuple[list[dict], list[int], int]:
    rows, numbers = [], []
    number = first_row
    offset = 0  # byte offset of the current line in the file
    with open_data(path) as f:
        for lineno, raw in enumerate(f, start=1):
            line_offset, offset = offset, offset + len(raw)
            body = raw[len(_BOM):] if lineno == 1 and raw.startswith(_BOM) else raw
            if not body.strip():
                continue
            row = number
            number += 1
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad(BadRowError(
                    where, f"not valid UTF-8: byte 0x{body[exc.start]:02x} at byte {exc.start} of "
                    f"the line (byte {line_offset + exc.start + len(raw) - len(body)} of the file)",
                    _UTF8_FIX, row=row, line=lineno, file=str(path),
                ))
                continue
            text = text.rstrip("\r\n")
            try:
                value = json.loads(text, parse_int=_parse_int)
            except json.JSONDecodeError as exc:
                bad(BadRowError(
                    where, f"not valid JSON: {exc.msg} at character {exc.pos + 1}: {_head(text)}",
                    f"{_JSONL_FIX}; a string that spans lines needs \\n, not a line break",
                    row=row, line=lineno, file=str(path),
                ))
                continue
            if not isinstance(value, dict):
                bad(BadRowError(
                    where, f"expected a JSON object, got {_json_type(value)}: {_head(text)}",
                    _JSONL_FIX, row=row, line=lineno, file=str(path),
                ))
                continue
            rows.append(value)
            numbers.append(row)
    return rows, numbers, number


def _read_list(path: Path, where: str, bad, first_row: int) -> tuple[list[dict], list[int], int]:
    """A .json file holding one list. It parses whole, so a bad byte or a syntax error spoils
    every row: that is an error even with on_bad_row: skip."""
    with open_data(path) as f:
        data = f.read()
    data = data[len(_BOM):] if data.startswith(_BOM) else data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{where}: {path}, line {line}: not valid UTF-8: byte 0x{data[exc.start]:02x} at "
            f"byte {exc.start} of the file. A .json list is read whole, so this cannot be skipped. "
            f"Fix: {_UTF8_FIX}"
        ) from None
    try:
        value = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{where}: {path}, line {exc.lineno}: not valid JSON: {exc.msg} at column "
            f"{exc.colno}. A .json list is read whole, so this cannot be skipped. Fix: correct "
            f"the JSON there, or store the rows as .jsonl (one object a line) so that "
            f"on_bad_row: skip can leave out a bad line"
        ) from None
    rows, numbers = [], []
    for k, item in enumerate(value):
        if not isinstance(item, dict):
            bad(BadRowError(
                where, f"list item {k} is {_json_type(item)}, not a JSON object",
                "make every item of the list an object like {\"prompt\": ..., ...}",
                row=first_row + k, file=str(path),
            ))
            continue
        rows.append(item)
        numbers.append(first_row + k)
    return rows, numbers, first_row + len(value)


def rows_to_dataset(rows: list[dict]) -> datasets.Dataset:
    """A Dataset holding exactly these values: string columns as strings, any other column
    (lists, messages, numbers, mixed types) as JSON, so nothing is coerced or cast."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    features = {}
    for column in columns:
        values = (row.get(column) for row in rows)
        plain = all(v is None or isinstance(v, str) for v in values)
        features[column] = datasets.Value("string") if plain else datasets.Json()
    # A Json column takes a str as JSON text already encoded ("0" would come back as 0), so
    # every value is encoded here.
    table = {
        c: [row.get(c) for row in rows] if features[c] == datasets.Value("string")
        else [json.dumps(row.get(c)) for row in rows]
        for c in columns
    }
    return datasets.Dataset.from_dict(table, features=datasets.Features(features))


def _parse_int(digits: str):
    """An int beyond int64 is read as a float: `datasets` would turn it into a string (which a
    text field would then accept). No field of any format can use such a number anyway."""
    value = int(digits)
    return value if -2**63 <= value < 2**63 else float(value)


def _json_type(value) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _head(text: str, n: int = 60) -> str:
    text = text.strip()
    return repr(text if len(text) <= n else text[: n - 3] + "...")
