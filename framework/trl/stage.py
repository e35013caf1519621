"""The template of every stage that trains with one TRL trainer (SFT, reward model, DPO, KTO).

What all of them share is written once, in `TRLStage.run`: the TRL config from `args`, the data
report, an adapter input merged into its base, full weights or LoRA/QLoRA loading, frozen lower
layers, the trainable dtype, training with resume and guards, metrics, and saving the model or
adapter. A new TRL algorithm is a subclass that names its TRL config class, its model task and
its output kind, and implements the hooks that differ: `load_data`, `build_trainer` and
`metrics` (optionally `prepare_data`, `load_model`, `check_prepared`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, Mapping, Optional

from framework.artifacts import Artifact
from framework.errors import ConfigError
from framework.hardware.config import HardwareConfig
from framework.models.adapters import ADAPTER_KINDS, AdapterConfig
from framework.models.adapter_models import CAUSAL_LM
from framework.stage import Stage, StageContext, StageResult
from framework.trl.args import build_config, check_eval_data, default_args


@dataclass
class TRLStageConfig:
    # Forwarded to the stage's TRL config class (trl.SFTConfig, trl.RewardConfig, ...), which
    # rejects unknown names, e.g. {max_steps: 100, learning_rate: 2e-5, max_length: 512}.
    args: Dict[str, Any] = field(default_factory=dict)
    # Freeze the embeddings and the lowest N decoder layers (0: train everything); the
    # backward pass then stops early, which is what makes CPU runs fit in minutes. With an
    # adapter (lora, qlora), the adapters go on the layers above the lowest N only.
    freeze_layers: int = 0


class TRLStage(Stage):
    """Trains the `model` input on the `data` input with a TRL trainer; outputs `model`."""

    Config = TRLStageConfig
    adapter_kinds = ADAPTER_KINDS
    trl_config: ClassVar[str]  # the TRL config class's name in `trl`, e.g. "SFTConfig"
    model_task: ClassVar[str]  # framework.models.adapter_models.CAUSAL_LM or SEQ_CLS
    # The defaults of the TRL config class for the keys the memory planner reads (a test checks
    # them against the installed TRL, so planning does not import it).
    planner_defaults: ClassVar[Mapping[str, Any]] = {
        "per_device_train_batch_size": 8, "max_length": 1024, "gradient_accumulation_steps": 1,
        "gradient_checkpointing": True}
    sequences_per_row: ClassVar[int] = 1  # sequences a batch row puts through the model
    frozen_reference: ClassVar[bool] = False  # holds a copy of the starting weights (DPO, KTO)

    # ------------------------------------------------------------------------------ hooks
    def load_data(self, source, where: str, report):
        """(train, eval or None) rows in the trainer's form, bad rows recorded in `report`."""
        raise NotImplementedError

    def prepare_data(self, tokenizer, args, train, evaluation, report, where: str):
        """Checks and filters that need the tokenizer, before the model loads."""
        return train, evaluation

    def load_model(self, location: str, args, adapter: AdapterConfig, ctx: StageContext,
                   where: str):
        """(the model, or a path the trainer loads itself; peft config or None)."""
        from framework.models.adapter_models import load_trainable

        return load_trainable(location, self.model_task, ctx.model, adapter, ctx.hardware,
                              gradient_checkpointing=args.gradient_checkpointing,
                              freeze_layers=self.config.freeze_layers, where=where)

    def build_trainer(self, model, tokenizer, args, train, evaluation, peft_config):
        raise NotImplementedError

    def check_prepared(self, trainer, tokenizer, args, train, evaluation, source, report,
                       where: str) -> dict[str, int]:
        """After the trainer tokenized the data: make any row it dropped an error (or a
        reported skip). Returns counts for the metrics, e.g. {"train_rows": N}."""
        return {}

    def metrics(self, trainer, output, counts: Mapping[str, int], evaluation) -> dict[str, Any]:
        raise NotImplementedError

    # ----------------------------------------------------------------------------- shared
    def training_config(self, output_dir: str, seed: int, where: str,
                        hardware: Optional[HardwareConfig] = None):
        """The TRL config from `args` (`where` is the stage node); errors name the key."""
        import trl

        return build_config(getattr(trl, self.trl_config), self.config.args,
                            default_args(output_dir, seed, hardware), where)

    def check(self, inputs: Mapping[str, Artifact], where: str) -> None:
        from framework.data import check_source, source_from_artifact

        if self.config.freeze_layers < 0:
            raise ConfigError(f"{where}.params.freeze_layers: must be >= 0, got "
                              f"{self.config.freeze_layers}.")
        args = self.training_config("checkpoints", 0, where)
        if "data" in inputs:
            data_where = f"{where}.inputs.data"
            source = source_from_artifact(inputs["data"], data_where)
            check_source(source, data_where)
            check_eval_data(args, source, where)

    def memory_workload(self, name: str, hardware: Optional[HardwareConfig] = None):
        from framework.memory.specs import TrainWorkload

        args = self.config.args
        values = {**self.planner_defaults, **{k: v for k, v in args.items() if v is not None}}
        where = f"stages.{name}.params.args"
        for key in ("per_device_train_batch_size", "max_length", "gradient_accumulation_steps"):
            if not isinstance(values[key], int) or values[key] <= 0:
                raise ConfigError(f"{where}.{key}={values[key]!r}: must be a positive integer.")
        compute = "bfloat16" if args.get("bf16") else "float16" if args.get("fp16") else None
        return TrainWorkload(
            stage=name, kind="", batch_size=values["per_device_train_batch_size"],
            max_length=values["max_length"],
            gradient_accumulation_steps=values["gradient_accumulation_steps"],
            gradient_checkpointing=bool(values["gradient_checkpointing"]),
            compute_dtype=compute, sequences_per_row=self.sequences_per_row,
            causal_lm=self.model_task == CAUSAL_LM, frozen_reference=self.frozen_reference)

    def run(self, inputs: Mapping[str, Artifact], ctx: StageContext) -> StageResult:
        from framework.common.distributed import is_main_process, record_weights
        from framework.data import source_from_artifact
        from framework.data.report import DataReport
        from framework.models import load_tokenizer
        from framework.models.adapter_models import (
            finish_adapter, full_weights_dir, match_trainable_dtype)
        from framework.models.freezing import freeze_lower_layers
        from framework.common import training_log
        from framework.trl import training

        where = f"stages.{ctx.name}"
        adapter = ctx.adapter or AdapterConfig()
        output_dir = Path(ctx.output_dir)
        checkpoints = output_dir / "checkpoints"
        args = self.training_config(str(checkpoints), ctx.seed, where, ctx.hardware)
        data_where = f"{where}.inputs.data"
        source = source_from_artifact(inputs["data"], data_where)
        report = DataReport()
        data_report = report.source("data")
        train, evaluation = self.load_data(source, data_where, data_report)
        tokenizer = load_tokenizer(inputs["model"].location, ctx.model)
        train, evaluation = self.prepare_data(tokenizer, args, train, evaluation, data_report,
                                              where)

        # an adapter input is merged into its base first: this stage trains on that
        location = full_weights_dir(inputs["model"], output_dir / "start_model", ctx.model)
        model, peft_config = self.load_model(location, args, adapter, ctx, where)
        trainer = self.build_trainer(model, tokenizer, args, train, evaluation, peft_config)
        if not adapter.enabled and self.config.freeze_layers and isinstance(model, (str, Path)):
            # load_model handed over a path and the trainer loaded the weights
            freeze_lower_layers(trainer.model, self.config.freeze_layers,
                                f"{where}.params.freeze_layers")
        match_trainable_dtype(trainer.model, adapter, ctx.model, ctx.hardware)
        counts = self.check_prepared(trainer, tokenizer, args, train, evaluation, source,
                                     data_report, where)

        output = training.train(trainer, checkpoints, where, ctx.logger)

        metrics = self.metrics(trainer, output, counts, evaluation)
        metrics["skipped_rows"] = report.counts()
        if is_main_process():
            report.write(output_dir)
            training_log.write(output_dir, trainer.state.log_history)  # the report's curves
        model_dir = output_dir / "model"
        record_weights("model", trainer.model)  # diagnostics: ranks must agree
        trainer.save_model(str(model_dir))  # safetensors (weights or adapter), plus the tokenizer
        kind = self.outputs["model"]
        artifact = Artifact(kind, str(model_dir))
        if adapter.enabled:
            artifact = finish_adapter(kind, model_dir, adapter, inputs["model"], location,
                                      output_dir, ctx.model)
        return StageResult(metrics=metrics, artifacts={"model": artifact})
