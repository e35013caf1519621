"""Data sources and the canonical row formats of each data kind.

Names are imported on first use, so reading configs does not import `datasets`.
"""

import importlib

_EXPORTS = {
    "DataSourceConfig": "framework.data.config",
    "data_artifact": "framework.data.config",
    "DataFormat": "framework.data.formats",
    "formats_of": "framework.data.formats",
    "register_format": "framework.data.formats",
    "detect_format": "framework.data.formats",
    "row_error": "framework.data.formats",
    "to_prompt_completion": "framework.data.demonstrations",
    "to_prompts": "framework.data.prompts",
    "to_text": "framework.data.prompts",
    "builtin_names": "framework.data.sources",
    "check_source": "framework.data.sources",
    "load_examples": "framework.data.sources",
    "load_rows": "framework.data.sources",
    "source_from_artifact": "framework.data.sources",
    "split_by_group": "framework.data.sources",
    "expand_ranking": "framework.data.comparisons",
    "load_comparisons": "framework.data.comparisons",
    "to_pairs": "framework.data.comparisons",
    "to_feedback": "framework.data.feedback",
    "BadRowError": "framework.data.report",
    "DataReport": "framework.data.report",
    "SourceReport": "framework.data.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'framework.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
