"""Fine-tuning: LoRA adapters, linear probes, freezing and locked towers."""
from mmlab.finetune.locked import count_parameters, freeze, lock_tower, set_trainable, unfreeze
from mmlab.finetune.lora import (
    LoRALinear,
    apply_lora,
    find_linear,
    lora_layers,
    lora_state_dict,
    merge_lora,
    remove_lora,
    unmerge_lora,
)
from mmlab.finetune.memory import saved_activation_bytes, training_memory
from mmlab.finetune.probe import Classifier, accuracy, extract_features, linear_probe, probe_head

__all__ = [
    "Classifier",
    "LoRALinear",
    "accuracy",
    "apply_lora",
    "count_parameters",
    "extract_features",
    "find_linear",
    "freeze",
    "linear_probe",
    "lock_tower",
    "lora_layers",
    "lora_state_dict",
    "merge_lora",
    "probe_head",
    "remove_lora",
    "saved_activation_bytes",
    "set_trainable",
    "training_memory",
    "unfreeze",
    "unmerge_lora",
]
