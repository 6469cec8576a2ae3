"""``rerank train``: a full-ranking model fine-tuned on ``rerank labels`` output with Hugging Face's
Trainer and the importance-aware loss of "Sliding Windows Are Not the End" (Liu et al., 2024).

The Trainer brings what large runs need: ``accelerate launch`` / ``torchrun`` (DDP), DeepSpeed
ZeRO-3 or FSDP (configs in ``eval/train/``), gradient checkpointing, bf16, LoRA through peft,
checkpoints and resuming. What is ours: the prompt, built exactly as the vllm backend builds it at
inference; the loss, each answer token weighted by the rank of the identifier it belongs to and
summed over the answer tokens of the whole optimisation step (every device and accumulated
micro-batch) divided by their number; logits computed for answer positions only (a 100-passage
prompt is ~10k tokens, its answer ~400); and nDCG@10 of ``--strategy full`` on a dev set with
every checkpoint. torch, transformers, accelerate and peft are imported when training starts.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .loss import IGNORE_INDEX, WEIGHTINGS, collate, pack, weighted_token_nll
from .ranking_eval import DevSet, check_dev_set, evaluate_model

INSTALL_HINT = "pip install 'rerank-llm[train]'"
#: What ``rerank train`` writes into its output folder besides the model.
REPORT_NAME = "rerank-train.json"
#: Files one of which a model folder's tokenizer is loaded from.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
#: The temporary folder a LoRA checkpoint is merged into to be scored (vLLM loads whole models).
MERGED_FOR_EVAL = "merged-for-eval"


@dataclass
class TrainConfig:
    """Everything ``rerank train`` is told; :func:`train` takes it.

    Attributes
    ----------
    labels : list of str
        Files of ``rerank labels`` (``-o`` or ``--sft`` output), either variant.
    model : str
        The model to fine-tune: a Hugging Face folder (or hub name where the hub is reachable).
    output : str
        Output folder: checkpoints, then the final model, ready for ``--backend vllm``.
    validation : list of str
        Labels files held out for validation; empty: ``validation_fraction`` of the queries.
    validation_fraction : float
        Share of the queries held out when no validation file is given (by a hash of the qid).
    weighting : str
        ``importance`` (the paper's loss) or ``uniform`` (its ablation).
    alpha : float
        Weight of separators and the end-of-turn token under ``importance``.
    max_length : int or None
        The most tokens an example may have (default: the model's context); longer ones are
        dropped and counted, never cut.
    epochs, max_steps, learning_rate, batch_size, gradient_accumulation_steps, warmup_ratio,
    lr_scheduler, weight_decay, seed, logging_steps, save_steps, save_total_limit
        As Hugging Face's ``TrainingArguments`` (``save_steps`` None: at the end of each epoch).
    bf16 : bool or None
        Mixed precision in bfloat16 (None: where the GPU supports it).
    dtype : str
        ``auto`` (float32 weights for full fine-tuning, bfloat16 under LoRA, DeepSpeed or FSDP
        when ``bf16``), ``float32``, ``bfloat16`` or ``float16``.
    gradient_checkpointing : bool
    packing : bool
        Several examples in one row without padding (attention kept apart by their positions);
        off: one query per sequence, as the paper.
    attn_implementation : str or None
        ``sdpa``, ``flash_attention_2``, ``eager`` (None: transformers' default).
    lora_rank : int
        0: full fine-tuning; otherwise LoRA of that rank through peft.
    lora_alpha, lora_dropout, lora_target
        LoRA's scaling (default 2 x rank), dropout and target modules (``all-linear`` or
        comma-separated names).
    merge_lora : bool
        Write the merged model into the output (it then loads in vLLM as any model); otherwise
        the output holds the adapter.
    deepspeed : str or None
        A DeepSpeed config file (``eval/train/zero3.json``).
    fsdp : str or None
        Hugging Face's ``fsdp`` setting, e.g. ``"full_shard auto_wrap"``.
    dev : DevSet or None
        Score every checkpoint and the final model with ``--strategy full`` on it.
    resume : bool
        Go on from the last checkpoint in ``output``.
    force : bool
        Train into a non-empty ``output`` (its checkpoints are replaced).
    trainer_args : dict
        Any other ``TrainingArguments`` field, by name.
    """

    labels: list[str]
    model: str
    output: str
    validation: list[str] = field(default_factory=list)
    validation_fraction: float = 0.05
    weighting: str = "importance"
    alpha: float = 1.0
    max_length: int | None = None
    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 1e-5
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    seed: int = 0
    logging_steps: int = 10
    save_steps: int | None = None
    save_total_limit: int | None = None
    bf16: bool | None = None
    dtype: str = "auto"
    gradient_checkpointing: bool = False
    packing: bool = False
    attn_implementation: str | None = None
    lora_rank: int = 0
    lora_alpha: int | None = None
    lora_dropout: float = 0.05
    lora_target: str = "all-linear"
    merge_lora: bool = False
    deepspeed: str | None = None
    fsdp: str | None = None
    dev: DevSet | None = None
    resume: bool = False
    force: bool = False
    trainer_args: dict = field(default_factory=dict)


def _modules():
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ConfigError(f"rerank train needs torch and transformers ({exc.name} is missing): {INSTALL_HINT}") from None
    return torch, transformers


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def say(message: str) -> None:
    """Print a progress line on stderr, from the main process of a distributed run only."""
    if _is_main_process():
        print(f"rerank train: {message}", file=sys.stderr, flush=True)


def check_config(config: TrainConfig) -> None:
    """Refuse a configuration that cannot train, in one line, before anything is loaded.

    Raises
    ------
    ConfigError
    """
    if config.weighting not in WEIGHTINGS:
        raise ConfigError(f"--weighting {config.weighting}: choose one of {', '.join(WEIGHTINGS)}")
    if config.lora_rank < 0:
        raise ConfigError(f"--lora-rank must be 0 (full fine-tuning) or positive, got {config.lora_rank}")
    if config.merge_lora and not config.lora_rank:
        raise ConfigError("--merge-lora needs --lora-rank: there is no adapter to merge")
    if config.batch_size < 1 or config.gradient_accumulation_steps < 1:
        raise ConfigError("--batch-size and --gradient-accumulation-steps must be at least 1")
    if config.max_length is not None and config.max_length < 2:
        raise ConfigError(f"--max-length must be at least 2, got {config.max_length}")
    if config.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise ConfigError(f"--dtype {config.dtype}: choose auto, float32, bfloat16 or float16")
    if config.deepspeed and not Path(config.deepspeed).is_file():
        raise ConfigError(f"--deepspeed {config.deepspeed}: no such file")
    for path in [*config.labels, *config.validation]:
        if not Path(path).is_file():
            raise ConfigError(f"{path}: no such labels file")
    if Path(config.model).exists() and not (Path(config.model) / "config.json").is_file():
        raise ConfigError(f"--model {config.model}: not a Hugging Face model folder (no config.json)")
    if config.dev is not None:
        check_dev_set(config.dev)
    output = Path(config.output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"-o {config.output}: exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not (config.resume or config.force):
        raise ConfigError(f"-o {config.output}: the folder is not empty; --resume goes on from its last "
                          "checkpoint, --force trains into it anyway")


def load_tokenizer(model: str):
    """The model's tokenizer, with a padding token (its EOS where it has none)."""
    _, transformers = _modules()
    folder = Path(model)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(f"--model {model}: no tokenizer in the folder (none of {', '.join(TOKENIZER_FILES)})")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--model {model}: cannot load its tokenizer: {str(exc).splitlines()[0]}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"--model {model}: its tokenizer is not a fast one; the answer's weights need "
                          "character offsets")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ConfigError(f"--model {model}: its tokenizer has no chat template; inference renders prompts "
                          "with it, so training must too")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_context(model: str) -> int | None:
    """The model's context from its config (``max_position_embeddings``), None when unknown."""
    _, transformers = _modules()
    try:
        config = transformers.AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--model {model}: cannot load its config: {str(exc).splitlines()[0]}") from None
    text = getattr(config, "get_text_config", lambda: config)()
    return getattr(text, "max_position_embeddings", None)


def load_model(config: TrainConfig, bf16: bool):
    """The model to train, in the dtype ``config.dtype`` says, with LoRA adapters when asked."""
    torch, transformers = _modules()
    dtype = config.dtype
    if dtype == "auto":
        sharded = bool(config.deepspeed or config.fsdp)
        dtype = "bfloat16" if bf16 and (config.lora_rank or sharded) else "float32"
    kwargs = {"dtype": getattr(torch, dtype)}
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(config.model, **kwargs)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--model {config.model}: cannot load it: {str(exc).splitlines()[0]}") from None
    if config.gradient_checkpointing:
        model.config.use_cache = False
    if config.lora_rank:
        try:
            import peft
        except ImportError:
            raise ConfigError(f"--lora-rank needs peft: {INSTALL_HINT}") from None
        targets = config.lora_target if config.lora_target == "all-linear" else [
            name.strip() for name in config.lora_target.split(",") if name.strip()]
        lora = peft.LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha or 2 * config.lora_rank,
                               lora_dropout=config.lora_dropout, target_modules=targets, task_type="CAUSAL_LM")
        model = peft.get_peft_model(model, lora)
        if config.gradient_checkpointing:
            model.enable_input_require_grads()
    return model, dtype


class ExampleDataset:
    """A list of tokenized examples as a map-style dataset (``len`` and indexing)."""

    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]


@dataclass(frozen=True)
class Collator:
    """Batches of examples: right-padded (``collate``) or packed into one row (``pack``)."""

    pad_token_id: int
    packing: bool = False

    def __call__(self, examples: list[dict]) -> dict:
        return pack(examples) if self.packing else collate(examples, self.pad_token_id)


def importance_trainer_class():
    """Hugging Face's ``Trainer`` with the importance-aware loss (built on first use, so that
    transformers is imported only when training)."""
    _, transformers = _modules()

    class ImportanceTrainer(transformers.Trainer):
        """The Trainer with :func:`~rerank.training.loss.weighted_token_nll` as its loss.

        The weighted sum over a micro-batch is divided by the number of answer tokens of the
        whole optimisation step (every accumulated micro-batch on every device, which the
        Trainer counts as ``num_items_in_batch``), so the step's gradient is that of the
        paper's per-batch loss over the effective batch, whatever the device count and
        accumulation. Only the positions that predict an answer token get logits.
        """

        # The loss below is normalised over the whole step: the Trainer must not divide it again.
        loss_is_scaled_for_ga = True

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            labels, weights = inputs.pop("labels"), inputs.pop("weights")
            # Position t predicts token t + 1: keep the positions whose next token is an answer token
            # in any row of the batch.
            keep = (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)
            # use_cache=False also keeps packed examples apart: with a cache, transformers (5.x) does not
            # read the examples' bounds from position_ids, and they attend to each other.
            if _accepts_logits_to_keep(model):
                outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
                logits = outputs.logits
            else:
                outputs = model(**inputs, use_cache=False)
                logits = outputs.logits[:, keep]
            total, count = weighted_token_nll(logits, labels[:, keep + 1], weights[:, keep + 1])
            if model.training and num_items_in_batch is not None:
                loss = total / num_items_in_batch
                if self.args.average_tokens_across_devices and self.args.world_size > 1:
                    # num_items_in_batch counts every device's tokens, and DDP averages gradients.
                    loss = loss * self.args.world_size
            elif model.training:
                loss = total / count.clamp(min=1)
                if "loss_is_scaled_for_ga" in vars(transformers.Trainer):
                    # transformers 5 leaves the division to us; 4.x divides such a loss itself.
                    loss = loss / getattr(self, "current_gradient_accumulation_steps",
                                          self.args.gradient_accumulation_steps)
            else:
                loss = total / count.clamp(min=1)
            return (loss, outputs) if return_outputs else loss

    return ImportanceTrainer


def _accepts_logits_to_keep(model) -> bool:
    base = model
    for attribute in ("module", "base_model", "model"):  # DDP, peft wrappers
        if "logits_to_keep" in inspect.signature(base.forward).parameters:
            return True
        base = getattr(base, attribute, base)
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def ranking_eval_callback(dev: DevSet, config: TrainConfig):
    """A ``TrainerCallback`` that scores each saved checkpoint on ``dev`` (main process only) and
    appends each outcome to ``OUTPUT/ranking-eval-history.jsonl``."""
    _, transformers = _modules()

    class RankingEvaluation(transformers.TrainerCallback):
        """nDCG@10 of ``--strategy full`` with every checkpoint, written into the checkpoint."""

        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                outcome = evaluate_folder(checkpoint, dev, config)
                outcome = {"step": state.global_step, "epoch": state.epoch, **outcome}
                with open(Path(args.output_dir) / "ranking-eval-history.jsonl", "a", encoding="utf-8") as log:
                    log.write(json.dumps(outcome) + "\n")
                if "nDCG@10" in outcome:
                    say(f"step {state.global_step}: nDCG@10 {outcome['nDCG@10']:.4f} on {outcome['queries']} "
                        f"dev queries ({checkpoint.name})")
                    state.log_history.append({"step": state.global_step, "eval_nDCG@10": outcome["nDCG@10"]})

    return RankingEvaluation()


def evaluate_folder(folder: Path, dev: DevSet, config: TrainConfig) -> dict:
    """Score a saved model folder on ``dev``; a LoRA adapter is merged into a temporary folder
    beside it first (vLLM loads whole models)."""
    if not (folder / "adapter_config.json").is_file():
        return evaluate_model(folder, dev)
    merged = folder / MERGED_FOR_EVAL
    try:
        merge_adapter(config.model, folder, merged)
        return evaluate_model(merged, dev, folder)
    finally:
        shutil.rmtree(merged, ignore_errors=True)


def merge_adapter(base: str, adapter: str | os.PathLike, output: str | os.PathLike) -> None:
    """Merge a LoRA adapter into its base model and save the whole model and tokenizer.

    Parameters
    ----------
    base : str
        The base model folder.
    adapter : str or path-like
        The adapter folder (``adapter_config.json``; its tokenizer when saved there).
    output : str or path-like
        Where the merged model goes; it loads in vLLM like any model.
    """
    torch, transformers = _modules()
    try:
        import peft
    except ImportError:
        raise ConfigError(f"merging a LoRA adapter needs peft: {INSTALL_HINT}") from None
    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype="auto")
    merged = peft.PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(output, safe_serialization=True)
    tokenizer_source = adapter if (Path(adapter) / "tokenizer_config.json").is_file() else base
    transformers.AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(output)
    del merged, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _save_steps(config: TrainConfig) -> dict:
    if config.save_steps:
        return {"save_strategy": "steps", "save_steps": config.save_steps,
                "eval_strategy": "steps", "eval_steps": config.save_steps}
    return {"save_strategy": "epoch", "eval_strategy": "epoch"}


def training_arguments(config: TrainConfig, bf16: bool, has_validation: bool):
    """Hugging Face's ``TrainingArguments`` for ``config``."""
    torch, transformers = _modules()
    schedule = _save_steps(config)
    if not has_validation:
        schedule["eval_strategy"] = "no"
        schedule.pop("eval_steps", None)
    arguments = dict(
        output_dir=config.output, num_train_epochs=config.epochs, max_steps=config.max_steps,
        learning_rate=config.learning_rate, per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size, gradient_accumulation_steps=config.gradient_accumulation_steps,
        lr_scheduler_type=config.lr_scheduler, weight_decay=config.weight_decay,
        seed=config.seed, data_seed=config.seed, logging_steps=config.logging_steps,
        save_total_limit=config.save_total_limit, bf16=bf16, gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        remove_unused_columns=False, prediction_loss_only=True, report_to="none",
        deepspeed=config.deepspeed, fsdp=config.fsdp or "", disable_tqdm=not _is_main_process(),
        dataloader_pin_memory=torch.cuda.is_available(),
        # Without an accelerator, several processes (accelerate launch, torchrun) train as DDP on gloo
        # only when told they are on the CPU.
        use_cpu=not (torch.cuda.is_available() or _mps_available(torch)), **schedule)
    # transformers 5 reads a float warmup_steps in [0, 1) as a ratio; 4.x has warmup_ratio.
    fields = {item.name for item in dataclasses.fields(transformers.TrainingArguments)}
    arguments["warmup_ratio" if "warmup_ratio" in fields else "warmup_steps"] = config.warmup_ratio
    arguments.update(config.trainer_args)
    try:
        return transformers.TrainingArguments(**arguments)
    except (TypeError, ValueError, ImportError) as exc:
        raise ConfigError(f"the trainer's settings are refused: {str(exc).splitlines()[0]}") from None


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def last_checkpoint(output: str) -> str | None:
    """The last ``checkpoint-N`` folder of an output folder, None when there is none."""
    folders = [path for path in Path(output).glob("checkpoint-*") if path.name.split("-")[-1].isdigit()]
    return str(max(folders, key=lambda path: int(path.name.split("-")[-1]))) if folders else None


def labels_prompt_settings(paths: list[str]) -> dict:
    """The prompt settings the labels were rendered with, from the run record ``rerank labels``
    writes beside them (``prompt``, ``max_passage_words``); empty when there is none."""
    for path in paths:
        record = labels_record(path)
        if record is not None:
            settings = record.get("settings") or {}
            return {name: settings.get(name) for name in ("prompt", "max_passage_words")
                    if settings.get(name) is not None}
    return {}


def labels_record(path: str) -> dict | None:
    """The run record of the ``rerank labels`` run that wrote ``path``: beside it for its ``-o``
    output, or a record in the same folder naming it (its ``--sft`` output); None when none does."""
    from ..output_record import RECORD_SUFFIX, read_record, record_names, record_path

    try:
        info = os.stat(path)
    except OSError:
        return None
    candidates = [record_path(path), *sorted(Path(path).parent.glob(f"*{RECORD_SUFFIX}"))]
    for candidate in candidates:
        record = read_record(candidate)
        if record is not None and record_names(record, path, info):
            return record
    return None


def train(config: TrainConfig, callbacks: list | None = None) -> dict:
    """Fine-tune ``config.model`` on the labels and save the model into ``config.output``.

    Parameters
    ----------
    config : TrainConfig
    callbacks : list of transformers.TrainerCallback, optional
        More callbacks for the Trainer (``eval/gpu_train_smoke.py`` times the steps with one).

    Returns
    -------
    dict
        The report also written to ``OUTPUT/rerank-train.json``: the examples used, dropped
        and held out, the loss history, validation loss, the final nDCG@10 on the dev set, and
        the command that reranks with the trained model.

    Raises
    ------
    ConfigError, InputError
        For a user mistake, in one line.
    """
    from .data import read_label_records, split_validation, tokenize_records

    check_config(config)
    torch, transformers = _modules()
    transformers.logging.set_verbosity_warning()
    records = read_label_records(config.labels)
    if config.validation:
        training, validation = records, read_label_records(config.validation)
        trained = {record.qid: record.source for record in training}
        both = next((record for record in validation if record.qid in trained), None)
        if both is not None:
            raise ConfigError(f"{both.source}: field 'qid': {both.qid!r} is also a training example "
                              f"({trained[both.qid]}): a validation query must be held out")
    else:
        training, validation = split_validation(records, config.validation_fraction, config.seed)
    if not training:
        raise ConfigError(f"{config.labels[0]}: no training examples")
    tokenizer = load_tokenizer(config.model)
    context = model_context(config.model)
    max_length = config.max_length or context
    train_set = tokenize_records(tokenizer, training, alpha=config.alpha, weighting=config.weighting,
                                 max_length=max_length)
    valid_set = tokenize_records(tokenizer, validation, alpha=config.alpha, weighting=config.weighting,
                                 max_length=max_length)
    dropped = train_set.dropped + valid_set.dropped
    if dropped:
        say(f"dropped {len(dropped)} examples longer than {max_length} tokens (their answer would be cut; "
            f"first: {dropped[0]}): make the labels with a smaller --max-passage-words or raise --max-length")
    if not train_set.examples:
        raise ConfigError(f"every training example is longer than {max_length} tokens: make the labels with a "
                          "smaller --max-passage-words or raise --max-length")
    say(f"{len(train_set.examples)} training and {len(valid_set.examples)} validation examples "
        f"(longest {max(train_set.longest, valid_set.longest)} tokens), weighting {config.weighting}")

    bf16 = config.bf16 if config.bf16 is not None else bool(torch.cuda.is_available()
                                                            and torch.cuda.is_bf16_supported())
    arguments = training_arguments(config, bf16, bool(valid_set.examples))
    model, dtype = load_model(config, bf16)
    settings = labels_prompt_settings(config.labels)
    dev = config.dev
    if dev is not None:
        dev = DevSet(**{**asdict(dev), "prompt": dev.prompt or settings.get("prompt"),
                        "max_passage_words": dev.max_passage_words or settings.get("max_passage_words")})
    trainer = importance_trainer_class()(
        model=model, args=arguments, train_dataset=ExampleDataset(train_set.examples),
        eval_dataset=ExampleDataset(valid_set.examples) if valid_set.examples else None,
        data_collator=Collator(tokenizer.pad_token_id, config.packing), processing_class=tokenizer,
        callbacks=[*(callbacks or []), *([ranking_eval_callback(dev, config)] if dev is not None else [])] or None)
    resume_from = last_checkpoint(config.output) if config.resume else None
    if config.resume and resume_from is None:
        say(f"no checkpoint in {config.output} yet: starting from the beginning")
    outcome = trainer.train(resume_from_checkpoint=resume_from)
    metrics = dict(outcome.metrics)
    if valid_set.examples:
        metrics.update(trainer.evaluate())
    trainer.save_model(config.output)
    trainer.accelerator.wait_for_everyone()
    report = {}
    if trainer.is_world_process_zero():
        report = _finish(config, trainer, tokenizer, dev, metrics, dtype, settings, records=len(records),
                         train_examples=len(train_set.examples), validation_examples=len(valid_set.examples),
                         dropped=dropped, max_length=max_length)
    trainer.accelerator.wait_for_everyone()
    return report


def _finish(config: TrainConfig, trainer, tokenizer, dev: DevSet | None, metrics: dict, dtype: str,
            settings: dict, **counts) -> dict:
    """Merge the adapter when asked, score the final model, and write the report."""
    output = Path(config.output)
    if config.merge_lora:
        adapter = output / "adapter"
        shutil.rmtree(adapter, ignore_errors=True)
        adapter.mkdir()
        for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
            if (output / name).is_file():
                (output / name).rename(adapter / name)
        tokenizer.save_pretrained(adapter)
        merge_adapter(config.model, adapter, output)
        say(f"merged the LoRA adapter into {output} (the adapter alone is in {adapter})")
    final = evaluate_folder(output, dev, config) if dev is not None else None
    if final and "nDCG@10" in final:
        say(f"final model: nDCG@10 {final['nDCG@10']:.4f} on {final['queries']} dev queries")
    elif final:
        say(final["skipped"])
    serve = [arg for name, value in (("--prompt", settings.get("prompt")),
                                     ("--max-passage-words", settings.get("max_passage_words")))
             if value is not None for arg in (name, str(value))]
    is_adapter = (output / "adapter_config.json").is_file()
    report = {
        "model": config.model, "output": str(output), "adapter_only": is_adapter,
        **counts, "dtype": dtype, "metrics": metrics,
        "loss_history": [entry for entry in trainer.state.log_history if "loss" in entry or "eval_loss" in entry],
        "dev": final, "config": {**asdict(config), "dev": asdict(config.dev) if config.dev else None},
        "rerank_command": (["rerank", "run", "INPUT", "--backend", "vllm", "--model", str(output),
                            "--strategy", "full", *serve, "-o", "OUT.jsonl"] if not is_adapter else None),
    }
    (output / REPORT_NAME).write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return report
