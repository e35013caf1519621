"""Direct preference optimization (Rafailov et al. 2023) on comparisons, wrapping trl.DPOTrainer:
the policy learns the preferences directly, with no reward model and no sampling."""

from __future__ import annotations

from framework.artifacts import COMPARISONS, MODEL, Port
from framework.trl.lengths import check_lengths
from framework.trl.preference import PreferenceStage


class DPOStage(PreferenceStage):
    """Trains the wired model on chosen/rejected pairs (K-way rankings expanded to their K(K-1)/2
    pairs; a held-out fraction takes whole prompts). The model it starts from is also its frozen
    reference (with an adapter: the base with the adapter disabled). `args` go to
    trl.DPOConfig (beta, loss_type, max_length, learning_rate, ...)."""

    trl_config, trl_trainer = "DPOConfig", "DPOTrainer"
    sequences_per_row = 2  # chosen and rejected
    inputs = {
        "model": Port((MODEL,), doc="the policy to start from (usually the SFT output); also "
                                    "the frozen reference"),
        "data": Port((COMPARISONS,), doc="pairs or rankings of responses"),
    }
    outputs = {"model": MODEL}

    def load_data(self, source, where: str, report):
        from framework.data import load_comparisons

        return load_comparisons(source, where, report=report)

    def prepare_data(self, tokenizer, args, train, evaluation, report, where: str):
        self.check_chat_template(tokenizer, where)
        train, evaluation = check_lengths(tokenizer, args.max_length, train, evaluation, report,
                                          f"{where}.inputs.data",
                                          completions=("chosen", "rejected"))
        return train.remove_columns("group"), (
            None if evaluation is None else evaluation.remove_columns("group"))

    def check_prepared(self, trainer, tokenizer, args, train, evaluation, source, report,
                       where: str) -> dict[str, int]:
        return {"train_pairs": len(train), "eval_pairs": len(evaluation) if evaluation else 0}
