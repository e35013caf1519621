"""The `function` reward source: any Python callable scoring (prompt, response).

The callable is named by dotted path ("package.module:function") or by a name in the
framework's `reward_functions` registry (the entry-point group `framework.reward_functions`, or
`register_reward_function`). It receives (prompt, response) strings, the prompt being the last
user message, and returns a number; with `batched: true` it receives two lists and returns one
number per pair.
"""

from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import dataclass
from typing import Callable, Sequence

from framework import plugins
from framework.errors import ConfigError, FrameworkError
from framework.registry import MODULE_PATH
from framework.reward_source import Prompt, RewardSource, prompt_text

def register_reward_function(name: str, fn: Callable | None = None):
    """Make `fn` available as `function: NAME`; usable as a decorator."""
    return plugins.reward_functions.register(name, fn)


def resolve_function(spec: str, where: str) -> Callable:
    registry = plugins.reward_functions
    if spec in registry:
        try:
            return registry.get(spec)
        except FrameworkError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    module_name, sep, attr = spec.partition(":")
    if not MODULE_PATH.match(spec):  # an importable module, never a file path
        raise ConfigError(
            f"{where}: {spec!r} is neither a registered reward function "
            f"({', '.join(registry.names()) or 'none registered'}) nor a 'package.module:function' path."
        )
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise ConfigError(f"{where}: cannot import {spec!r}: {type(exc).__name__}: {exc}.") from exc
    if not callable(obj):
        raise ConfigError(f"{where}: {spec!r} is {type(obj).__name__}, not a callable.")
    return obj


def check_signature(fn: Callable, name: str, batched: bool, where: str) -> None:
    """The callable must take (prompt, response), or two lists with batched: true; anything else
    (os:system, a class, ...) is refused at planning. Recipes and overrides are trusted code:
    this guards against mistakes, not against an attacker who can edit them."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin without a signature: it is called and its result checked
    try:
        signature.bind("prompt", "response")
    except TypeError:
        form = "f(prompts: list[str], responses: list[str]) -> list[float]" if batched else \
            "f(prompt: str, response: str) -> float"
        raise ConfigError(f"{where}: {name!r} has the signature {signature}, which cannot be "
                          f"called as {form}.") from None


class FunctionReward(RewardSource):
    @dataclass
    class Config:
        function: str = ""  # "package.module:function" or a registered name
        batched: bool = False  # call once with lists instead of once per pair

    def __init__(self, config):
        super().__init__(config)
        self._fn = None

    def check(self, where: str) -> None:
        fn = resolve_function(self.config.function, f"{where}.function")
        check_signature(fn, self.config.function, self.config.batched, f"{where}.function")
        self._fn = fn

    def setup(self, inputs=None, device=None, model_cfg=None) -> None:
        if self._fn is None:
            self.check("reward")

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        if self._fn is None:
            self.setup()
        prompts = [prompt_text(p) for p in prompts]
        if self.config.batched:
            values = list(self._fn(list(prompts), list(responses)))
        else:
            values = [self._fn(p, r) for p, r in zip(prompts, responses)]
        if len(values) != len(prompts):
            raise FrameworkError(
                f"reward function {self.config.function!r} returned {len(values)} scores for "
                f"{len(prompts)} responses."
            )
        out = []
        for i, v in enumerate(values):
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise FrameworkError(
                    f"reward function {self.config.function!r} returned {v!r} for response {i}; "
                    f"it must return a number."
                ) from None
            if not math.isfinite(v):
                raise FrameworkError(
                    f"reward function {self.config.function!r} returned {v} for response {i} "
                    f"(prompt {prompts[i][:80]!r}); rewards must be finite."
                )
            out.append(v)
        return out
