"""Secrets (hub tokens, API keys, passwords) never reach a run's files or logs.

Two rules, applied to config.yaml, manifests, summary.json, Hydra's copies under .hydra/ and
every log record:
- the value of a key named like a secret (its words include token, key, secret, password,
  apikey, authorization, credential(s): `hf_token`, `api_key`, `openaiApiKey`) is replaced,
  except tokenizer settings such as `pad_token`;
- any text containing the value of a secret-named environment variable (HF_TOKEN,
  OPENAI_API_KEY, ...) has that value replaced, whatever key or message it appears in.
In config.yaml a secret key whose value came from an interpolation keeps the interpolation
text (`${oc.env:HF_TOKEN}`), which says where the value comes from without revealing it.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

REDACTED = "<redacted>"
SECRET_WORDS = {"token", "key", "secret", "password", "passwd", "apikey", "authorization",
                "credential", "credentials"}
# Names that contain a secret word but hold no secret.
NOT_SECRET = {"pad_token", "eos_token", "bos_token", "unk_token", "sep_token", "cls_token",
              "mask_token", "group_key"}
MIN_SECRET_LENGTH = 6  # shorter environment values ("1", "true") would blank out ordinary text


def is_secret_key(name: Any) -> bool:
    if not isinstance(name, str) or name.lower() in NOT_SECRET:
        return False
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)  # apiKey -> api_Key
    words = [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]
    joined = "".join(words)
    return bool(SECRET_WORDS & set(words)) or "apikey" in joined


_from_config: set[str] = set()  # values of secret keys in the run's config (remember_secrets)


def secret_values() -> list[str]:
    """Values of secret-named environment variables and of the config's secret keys, longest
    first."""
    values = {v for k, v in os.environ.items() if is_secret_key(k) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(values | _from_config, key=len, reverse=True)


def remember_secrets(cfg) -> None:
    """Note the values of the config's secret keys, so that they are redacted wherever else they
    show up (a plugin logging its token, an error message quoting it)."""
    from omegaconf import OmegaConf

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if is_secret_key(key) and isinstance(value, (str, int)) \
                        and len(str(value)) >= MIN_SECRET_LENGTH:
                    _from_config.add(str(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    try:
        walk(OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg)
    except Exception:  # an unresolvable interpolation: planning reports it, with its path
        pass


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    for value in secrets if secrets is not None else secret_values():
        text = text.replace(value, REDACTED)
    return _redact_assignments(text)


def _redact_assignments(text: str) -> str:
    """`some.path.api_key=VALUE` (a command-line override) -> `some.path.api_key=<redacted>`."""
    def replace(match):
        return match.group(1) + REDACTED if is_secret_key(match.group(2)) else match.group(0)

    return re.sub(r"((?:[\w+~-]+\.)*([\w-]+)=)([^\s,'\"\]]+)", replace, text)


def redact(data: Any, secrets: list[str] | None = None) -> Any:
    """A copy of JSON-like `data` with secret keys' values and secret values replaced."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(data, dict):
        return {k: (REDACTED if is_secret_key(k) and data[k] not in (None, "") else
                    redact(v, secrets)) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(redact(v, secrets) for v in data)
    if isinstance(data, str):
        return redact_text(data, secrets)
    return data


def redacted_config(cfg) -> Any:
    """The resolved config as a container, redacted; a secret key set by an interpolation keeps
    the interpolation text instead of its value."""
    from omegaconf import OmegaConf

    resolved = OmegaConf.to_container(cfg, resolve=True)
    raw = OmegaConf.to_container(cfg, resolve=False)
    return _merge_raw_secrets(redact(resolved), raw)


def _merge_raw_secrets(redacted: Any, raw: Any) -> Any:
    if isinstance(redacted, dict) and isinstance(raw, dict):
        out = {}
        for key, value in redacted.items():
            original = raw.get(key)
            if value == REDACTED and isinstance(original, str) and original.startswith("${"):
                out[key] = original
            else:
                out[key] = _merge_raw_secrets(value, original)
        return out
    if isinstance(redacted, list) and isinstance(raw, list) and len(redacted) == len(raw):
        return [_merge_raw_secrets(a, b) for a, b in zip(redacted, raw)]
    return redacted


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with secrets replaced (attached to log handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = secret_values()
        message = record.getMessage()
        clean = redact_text(message, secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach a RedactingFilter to every handler of `logger` (the root logger by default)."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def redact_yaml_file(path) -> None:
    """Rewrite a YAML file (Hydra's .hydra/*.yaml) with secrets redacted, atomically."""
    from pathlib import Path

    import yaml

    from framework.common.files import write_text_atomic

    path = Path(path)
    if not path.exists():
        return
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    clean = redact(data)
    if clean != data:
        write_text_atomic(path, yaml.safe_dump(clean, sort_keys=False))


def pickle_redacted(cls: type) -> None:
    """Objects of `cls` pickle with their secrets redacted: transformers' Trainer saves its
    TrainingArguments (hub_token included) as `training_args.bin` in every checkpoint and in the
    saved model, with torch.save, which goes through copyreg. In memory they keep their values."""
    import copyreg

    copyreg.pickle(cls, _redacted_reduce)
    # copy.copy / copy.deepcopy consult the same table, but look for these first: copies in
    # memory keep the real values (a token still has to reach the hub).
    cls.__copy__ = _plain_copy
    cls.__deepcopy__ = _plain_deepcopy


def _redacted_reduce(obj):
    return _rebuild, (type(obj), redact(dict(vars(obj))))


def _plain_copy(obj):
    new = type(obj).__new__(type(obj))
    vars(new).update(vars(obj))
    return new


def _plain_deepcopy(obj, memo):
    import copy

    new = type(obj).__new__(type(obj))
    memo[id(obj)] = new
    vars(new).update(copy.deepcopy(vars(obj), memo))
    return new


def _rebuild(cls: type, state: dict):
    obj = cls.__new__(cls)
    vars(obj).update(state)
    return obj
