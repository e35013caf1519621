"""Kahneman-Tversky optimization (Ethayarajh et al. 2024) on unpaired feedback, wrapping
trl.KTOTrainer: each response labelled desirable or not, no pairs needed."""

from __future__ import annotations

from dataclasses import dataclass, field
from framework.artifacts import COMPARISONS, FEEDBACK, MODEL, Port
from framework.errors import ConfigError
from framework.trl.lengths import check_lengths
from framework.trl.preference import PreferenceStage
from framework.trl.stage import TRLStageConfig
from framework_plugins.stages.kto.labels import (
    LabelRule, check_both_labels, from_comparisons, from_feedback)


@dataclass
class KTOStageConfig(TRLStageConfig):
    # How labels are derived from rankings or 1-7 scores (labels.py); a label is used as given.
    labels: LabelRule = field(default_factory=LabelRule)


class KTOStage(PreferenceStage):
    """Trains the wired model on responses labelled desirable or undesirable: `feedback` data
    (a boolean label, or a 1-7 score), or comparisons turned into labels by `labels`. The model
    it starts from is also its frozen reference. `args` go to trl.KTOConfig (beta,
    desirable_weight, undesirable_weight, max_length, ...)."""

    Config = KTOStageConfig
    trl_config, trl_trainer = "KTOConfig", "KTOTrainer"
    sequences_per_row = 2  # the response and its KL (mismatched) counterpart
    inputs = {
        "model": Port((MODEL,), doc="the policy to start from (usually the SFT output); also "
                                    "the frozen reference"),
        "data": Port((FEEDBACK, COMPARISONS), doc="labelled or scored responses, or comparisons"),
    }
    outputs = {"model": MODEL}

    def check(self, inputs, where: str) -> None:
        problems = self.config.labels.problems(f"{where}.params.labels")
        if problems:
            raise ConfigError(problems)
        super().check(inputs, where)

    def load_data(self, source, where: str, report):
        from framework.data import load_comparisons, load_examples, to_feedback

        rule = self.config.labels
        if source.kind == COMPARISONS:
            pairs = load_comparisons(source, where, report=report)
            derive = from_comparisons
        else:
            pairs = load_examples(source, where, to_feedback, report=report)
            derive = from_feedback
        out, self.left_out = [], 0
        for split, rows in zip(("train", "eval"), pairs):
            if rows is None:
                out.append(None)
                continue
            labelled, left_out, picked = derive(rows, rule)
            self.left_out += left_out
            origins = report.origins.get(split)
            if origins:  # each labelled row's source row, for the length check's messages
                report.origins[split] = [origins[i] for i in picked]
            out.append(labelled if len(labelled) else None)
        if out[0] is None:
            raise ConfigError(f"{where}: no training response gets a label under "
                              f"params.labels ({rule}); loosen the rule.")
        return out[0], out[1]

    def prepare_data(self, tokenizer, args, train, evaluation, report, where: str):
        self.check_chat_template(tokenizer, where)
        check_both_labels(train, f"{where}.inputs.data")
        return check_lengths(tokenizer, args.max_length, train, evaluation, report,
                             f"{where}.inputs.data")

    def check_prepared(self, trainer, tokenizer, args, train, evaluation, source, report,
                       where: str) -> dict[str, int]:
        return {"train_rows": len(train), "eval_rows": len(evaluation) if evaluation else 0,
                "desirable": sum(train["label"]), "left_out": self.left_out}
