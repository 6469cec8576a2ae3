"""The launch configs shipped for `rerank train` in eval/train/: valid for the tools that read them."""

import json
from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "eval" / "train"


def test_zero3_saves_a_whole_model_and_leaves_the_rest_to_the_trainer():
    config = json.loads((CONFIGS / "zero3.json").read_text())
    zero = config["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert zero["offload_optimizer"]["device"] == zero["offload_param"]["device"] == "none"
    assert config["bf16"]["enabled"] == "auto"
    for name in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        assert config[name] == "auto"
    assert config["optimizer"]["params"]["lr"] == "auto"
    assert "scheduler" not in config  # the Trainer's --lr-scheduler applies


@pytest.mark.parametrize("name,kind", [("ddp.yaml", "MULTI_GPU"), ("fsdp.yaml", "FSDP")])
def test_accelerate_reads_the_launch_configs(name, kind):
    pytest.importorskip("accelerate")
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    config = load_config_from_file(str(CONFIGS / name))
    assert config.distributed_type.value == kind and config.mixed_precision == "bf16"
    # What `accelerate launch --config_file ... --num_processes 2` would hand each process.
    args = launch_command_parser().parse_args(
        ["--config_file", str(CONFIGS / name), "--num_processes", "2", "-m", "rerank", "train"])
    env = prepare_multi_gpu_env(_validate_launch_command(args)[0])
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    if kind == "FSDP":
        assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD"
        assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
        assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"  # the saved model loads in vLLM as it is
    else:
        assert "ACCELERATE_USE_FSDP" not in env
