"""The fusion benchmark: tasks, the tuned multi-seed protocol, statistics, reports and `python -m mmlab fusion-bench`.

    from mmlab.fusion_bench import ProtocolConfig, default_methods, load_task, run_protocol
    task = load_task("avdigits")
    result = run_protocol([task], {task.name: default_methods(task)}, ProtocolConfig(), out="fusion_bench")

The fusion modules, their registry and declared search spaces live in `mmlab.fusion`; this package trains
and compares them (through `mmlab.train.fit`). See `protocol.py` for the protocol, step by step.
"""
from mmlab.fusion_bench.measure import accuracy, count_flops, latency_ms, noised
from mmlab.fusion_bench.methods import (
    TRAINING_MODES,
    Method,
    check_methods,
    default_methods,
    parse_method,
    training_space,
)
from mmlab.fusion_bench.model import FusionModel, TokenEncoder
from mmlab.fusion_bench.protocol import ProtocolConfig, run_protocol, run_study
from mmlab.fusion_bench.report import BenchResult, load_result
from mmlab.fusion_bench.stats import mean_std, paired_difference, t_interval
from mmlab.fusion_bench.tasks import TASKS, Split, Task, load_task
from mmlab.fusion_bench.training import RunSettings, train_run
from mmlab.fusion_bench.tuning import TuningSettings, tune

__all__ = [
    "TASKS", "TRAINING_MODES", "BenchResult", "FusionModel", "Method", "ProtocolConfig", "RunSettings", "Split", "Task",
    "TokenEncoder",
    "TuningSettings", "accuracy", "check_methods", "count_flops", "default_methods", "latency_ms", "load_result",
    "load_task", "mean_std", "noised", "paired_difference", "parse_method", "run_protocol", "run_study", "t_interval",
    "train_run", "training_space", "tune",
]
