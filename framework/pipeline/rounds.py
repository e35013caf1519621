"""Iterated rounds: the root `rounds` node expanded into ordinary stages before planning.

    rounds:
      count: 2                  # on the command line: rounds.count=3
      after: sft                # the rounds run after this stage of `stages` (null: first)
      stages:                   # one round; each becomes NAME_1, NAME_2, ... in `stages`
        collect:
          plugin: collect
          inputs:
            policy: {first: sft.model, later: "rl_{previous}.model"}
            prompts: data.prompts
          params: {round: "{round}"}
        reward_model:
          plugin: reward_model
          inputs: {model: sft.model, data: "label_{round}.comparisons"}
      summary:                  # summary.json's `rounds` table: NAME -> STAGE.KEY[.KEY...]
        start: {labeler_score: evaluate.policies.sft.labeler}             # row 0
        each: {labeler_score: "evaluate.policies.rl_{round}.labeler"}     # rows 1..count

Inside `rounds.stages`, every string (keys, values, list items, params included) may hold
`{round}` (this round's number), `{previous}` (the one before; not in round 1) and `{count}`;
a string that is exactly one placeholder becomes a number (`round: "{round}"`). An input may be
`{first: REF, later: REF}`: round 1 takes `first` (a ref that exists before the rounds), later
rounds `later` (usually the previous round's stage, `rl_{previous}.model`). `{{` and `}}` are
literal braces. Each template parameter applies to every round
(`rounds.stages.rl.params.optimizer.params.steps=4`); `rounds.overrides.NAME_R` changes one
round's stage (`+rounds.overrides.label_1.params.labeler.params.accept_partial=true`).

In `stages`, with rounds, a string may hold `{count}` (`reward_model_{count}.model`: the last
round's), and a mapping key or list item that holds `{round}` is repeated once per round
(`"rl_{round}": "rl_{round}.model"`, `policies: [sft, "rl_{round}"]` gives sft, rl_1, rl_2).

So planning, reuse, resume, the memory command and the report see ordinary stages. Problems
(unknown placeholders, count < 1, a ref naming no stage, a clash of stage keys) are reported
together, each with its config path under `rounds` or `stages`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import logging
from string import Formatter
from typing import Any

from omegaconf import DictConfig, OmegaConf

from framework.errors import ConfigError
from framework.pipeline.schema import StageNode

FIRST, LATER = "first", "later"


def expand_rounds(cfg: DictConfig) -> DictConfig:
    """A copy of `cfg` whose `stages` hold the rounds' stages (and whose `rounds.stages` is
    empty, so expanding again changes nothing); `cfg` itself when it has no rounds."""
    rounds = cfg.get("rounds")
    if rounds is None or not rounds.get("stages"):
        return cfg
    problems: list[str] = []
    count = rounds.count
    if count < 1:
        raise ConfigError(f"rounds.count: must be >= 1, got {count}. Set rounds.count=N, or "
                          f"leave rounds.stages empty for a recipe without rounds.")
    fixed = OmegaConf.to_container(cfg.get("stages") or {}, resolve=True)
    template = OmegaConf.to_container(rounds.stages, resolve=True)
    names = [f"{name}_{r}" for r in range(1, count + 1) for name in template]
    for name in names:
        if name in fixed:
            problems.append(f"stages.{name}: the rounds make a stage of this name (from "
                            f"rounds.stages.{name.rsplit('_', 1)[0]}); rename one of them.")
    after = rounds.after
    if after is not None and after not in fixed:
        problems.append(f"rounds.after: {after!r} is not a stage of `stages`{_hint(after, fixed)}. "
                        f"Name the stage the rounds follow, or null to run them first.")
    known = {"stages": set(fixed) | set(names), "data": set(cfg.get("data") or {})}

    expanded = {}
    for r in range(1, count + 1):
        for name, node in template.items():
            expanded[f"{name}_{r}"] = _round_stage(node, r, count, f"rounds.stages.{name}",
                                                   known, problems)
    if rounds.get("overrides"):
        _apply_overrides(OmegaConf.to_container(rounds.overrides, resolve=True), expanded,
                         problems)
    stages = {}
    for name, node in fixed.items():
        stages[name] = _fixed_stage(node, count, f"stages.{name}", problems)
        if name == after:
            stages.update(expanded)
    if after is None:
        stages = {**expanded, **stages}
    metric_paths(rounds, problems, known["stages"])
    if problems:
        raise ConfigError(problems)
    out = copy.deepcopy(cfg)
    out.stages = {name: OmegaConf.merge(OmegaConf.structured(StageNode), node)
                  for name, node in stages.items()}
    out.rounds.stages = {}
    return out


def metric_paths(rounds, problems: list[str] | None = None, stages=None) -> list[dict]:
    """The `rounds.summary` table's paths: [{"round": 0, NAME: PATH}, {"round": 1, ...}, ...]
    (row 0 only when `start` names some). With `stages`, a path's head must be one of them."""
    problems = [] if problems is None else problems
    summary = rounds.get("summary") or {}
    count = rounds.count
    rows = []
    start = summary.get("start") or {}
    if start:
        rows.append({"round": 0, **{k: _format(v, {"count": count}, f"rounds.summary.start.{k}",
                                               problems) for k, v in start.items()}})
    each = summary.get("each") or {}
    for r in range(1, count + 1) if each else ():
        bound = _bound(r, count)
        rows.append({"round": r, **{k: _format(v, bound, f"rounds.summary.each.{k}", problems)
                                    for k, v in each.items()}})
    if stages is not None:
        for row in rows:
            for key, path in row.items():
                head = str(path).partition(".")[0]
                if key != "round" and path is not None and head not in stages:
                    part = "start" if row["round"] == 0 else "each"
                    problems.append(
                        f"rounds.summary.{part}.{key}: {path!r} names no stage"
                        f"{_hint(head, stages)}; a path is STAGE.KEY[.KEY...] into the "
                        f"stage's metrics.")
    return rows


def metric_table(paths: list[dict], stages: dict) -> tuple[list[dict], list[str]]:
    """(rows, problems): each path's value in the summary's stage `metrics` (None while its
    stage has not finished); problems name paths that a finished stage's metrics lack."""
    rows, problems = [], []
    for row in paths:
        values = {"round": row["round"]}
        for key, path in row.items():
            if key == "round":
                continue
            head, _, rest = path.partition(".")
            entry = stages.get(head) or {}
            value = entry.get("metrics") if entry.get("status") in ("done", "skipped") else None
            for part in rest.split(".") if value is not None else ():
                if not isinstance(value, dict) or part not in value:
                    problems.append(f"rounds.summary: {path!r} is not among the metrics of "
                                    f"stage {head!r}; it reports: "
                                    f"{', '.join(entry['metrics']) or 'none'}.")
                    value = None
                    break
                value = value[part]
            values[key] = value
        rows.append(values)
    return rows, problems


def log_rounds(summary: dict) -> None:
    """The per-round table on the console at the end of a run, and any path it could not find."""
    log = logging.getLogger("framework")
    rows, problems = metric_table(summary["round_metrics"], summary["stages"])
    for problem in problems:
        log.warning("%s", problem)
    for row in rows:
        log.info("round %d: %s", row["round"], ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in row.items() if k != "round"))


# ------------------------------------------------------------------------------- expanding
def _bound(r: int, count: int) -> dict[str, int]:
    return {"round": r, "count": count, **({"previous": r - 1} if r > 1 else {})}


def _round_stage(node: dict, r: int, count: int, where: str, known, problems) -> dict:
    bound = _bound(r, count)
    inputs = {}
    for port, ref in (node.get("inputs") or {}).items():
        at = f"{where}.inputs.{port}"
        if isinstance(ref, dict):
            if set(ref) != {FIRST, LATER}:
                problems.append(f"{at}: a mapping here takes exactly {FIRST}: REF (round 1) and "
                                f"{LATER}: REF (rounds 2 and on); got keys {sorted(ref)}.")
                continue
            branch = FIRST if r == 1 else LATER
            ref, at = ref[branch], f"{at}.{branch}"
        value = _format(ref, bound, at, problems, r)
        if value is not None:
            _check_ref(str(value), at, r, known, problems)
            inputs[port] = str(value)
    return {"plugin": node["plugin"], "inputs": inputs,
            "params": _fill(node.get("params") or {}, bound, f"{where}.params", problems, r),
            "adapter": node.get("adapter") or {}}


def _apply_overrides(overrides: dict, expanded: dict, problems) -> None:
    """`rounds.overrides.NAME_R` merged onto that one stage."""
    valid = [f.name for f in dataclasses.fields(StageNode)]
    for name, change in overrides.items():
        where = f"rounds.overrides.{name}"
        if name not in expanded:
            problems.append(f"{where}: the rounds make no stage {name!r}{_hint(name, expanded)}; "
                            f"they make {', '.join(expanded)}.")
        elif not isinstance(change, dict) or set(change) - set(valid):
            problems.append(f"{where}: expected a stage's keys ({', '.join(valid)}), got "
                            f"{change!r}.")
        else:
            expanded[name] = OmegaConf.to_container(OmegaConf.merge(expanded[name], change))


def _fixed_stage(node: dict, count: int, where: str, problems) -> dict:
    return {key: _fill_fixed(value, count, f"{where}.{key}", problems)
            for key, value in node.items()}


def _fill_fixed(value: Any, count: int, where: str, problems) -> Any:
    """A `stages` value: {count} filled in; keys and list items with {round} repeated."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            rounds = range(1, count + 1) if _mentions(key, "round") else [None]
            for r in rounds:
                bound = {"count": count} if r is None else {"round": r, "count": count}
                filled = _format(key, bound, f"{where}.{key}", problems)
                out[filled] = (_fill_fixed(item, count, f"{where}.{key}", problems) if r is None
                               else _fill(item, bound, f"{where}.{key}", problems))
        return out
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            if _mentions(item, "round"):
                out += [_fill(item, {"round": r, "count": count}, f"{where}[{i}]", problems)
                        for r in range(1, count + 1)]
            else:
                out.append(_fill_fixed(item, count, f"{where}[{i}]", problems))
        return out
    return _format(value, {"count": count}, where, problems)


def _fill(value: Any, bound: dict, where: str, problems, r: int | None = None) -> Any:
    if isinstance(value, dict):
        return {_format(k, bound, f"{where}.{k}", problems, r):
                _fill(v, bound, f"{where}.{k}", problems, r) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, bound, f"{where}[{i}]", problems, r) for i, v in enumerate(value)]
    return _format(value, bound, where, problems, r)


def _format(value: Any, bound: dict, where: str, problems, r: int | None = None) -> Any:
    """`value` with its placeholders filled in from `bound`; exactly "{name}" gives the number."""
    if not isinstance(value, str):
        return value
    try:
        fields = [f for _, f, _, _ in Formatter().parse(value) if f is not None]
    except ValueError as exc:
        problems.append(f"{where}: {value!r}: {exc}; write {{{{ and }}}} for literal braces.")
        return None
    unknown = [f for f in fields if f not in bound]
    if unknown:
        problems.append(f"{where}: {value!r}: {_why_unknown(unknown[0], bound, r)}")
        return None
    if len(fields) == 1 and value == "{" + fields[0] + "}":
        return bound[fields[0]]
    try:
        return value.format_map(bound)
    except (ValueError, TypeError) as exc:  # a bad format spec, e.g. {round:x2}
        problems.append(f"{where}: {value!r}: {exc}.")
        return None


def _why_unknown(name: str, bound: dict, r: int | None) -> str:
    if name == "previous" and r == 1:
        return ("{previous} is round 0 in round 1; for an input write {first: REF, later: "
                "'...{previous}...'} (round 1 takes `first`).")
    if name == "round" and "round" not in bound:
        return ("{round} outside the rounds names no round: use it in a mapping key or list "
                "item (repeated once per round), or {count} for the last round.")
    allowed = ", ".join("{" + b + "}" for b in bound) or "none"
    return (f"unknown placeholder {{{name}}}; the placeholders here are {allowed}. Write "
            f"{{{{{name}}}}} for a literal {{{name}}}.")


def _mentions(value: Any, name: str) -> bool:
    if isinstance(value, dict):
        return any(_mentions(k, name) or _mentions(v, name) for k, v in value.items())
    if isinstance(value, list):
        return any(_mentions(v, name) for v in value)
    if not isinstance(value, str):
        return False
    try:
        return any(f == name for _, f, _, _ in Formatter().parse(value))
    except ValueError:
        return False  # reported where it is filled in


def _check_ref(ref: str, where: str, r: int, known, problems) -> None:
    head, _, tail = ref.partition(".")
    if ref == "model":
        return
    if head == "data":
        if tail not in known["data"]:
            problems.append(f"{where}: {ref!r} (round {r}) names no data source"
                            f"{_hint(tail, known['data'])}; sources: "
                            f"{', '.join(sorted(known['data'])) or 'none'}.")
        return
    if head not in known["stages"]:
        problems.append(f"{where}: {ref!r} (round {r}) names no stage"
                        f"{_hint(head, known['stages'])}. A ref is 'model', 'data.NAME' or "
                        f"'STAGE.OUTPUT'; the stages are {', '.join(sorted(known['stages']))}.")


def _hint(name: str, choices) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
