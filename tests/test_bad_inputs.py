"""Bad input to the public API of data, evaluate, finetune, viz, run_notebooks, doctor, train.TrainConfig and
checkpoint loading: a table of calls, each with the exception it must raise and a regex its message must match
(mmlab's rule: a wrong Python type or dtype is a TypeError, a wrong shape or value a ValueError, and the
message names the argument). Every call gets a fresh `tmp` folder. `MUTATIONS` checks that a mutator which
refuses its arguments leaves the model exactly as it was.

The command line and the fusion bench are probed in tests/test_cli.py and tests/test_fusion_bench.py.
"""
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mmlab import evaluate, finetune, viz
from mmlab.checkpoint import CheckpointError, load_checkpoint, load_model_state, save_checkpoint
from mmlab.data import AVDigits, ShapesWorld, collate_shapes_world, load_photo, verify_assets
from mmlab.data.assets import AssetError
from mmlab.data.av_digits import image_split_indices
from mmlab.data.shapes_world import canonical_caption
from mmlab.doctor import check_kernels, run_doctor
from mmlab.run_notebooks import run_notebooks
from mmlab.train import TrainConfig

NAN, INF = math.nan, math.inf


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 5))


def lora_mlp():
    model = mlp()
    finetune.apply_lora(model, ["0", "3"], rank=2)
    return model


def feats(n=4, d=3):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0))


def probe(**kwargs):
    args = {"train_features": feats(), "train_labels": [0, 1, 0, 1], "test_features": feats(),
            "test_labels": [0, 1, 0, 1], **kwargs}
    return evaluate.linear_probe_accuracy(**args)


def enc_text(prompts):
    return torch.randn(len(prompts), 3, generator=torch.Generator().manual_seed(len(prompts)))


def image(c=3, h=32, w=32):
    return torch.rand(c, h, w)


def av(**kwargs):
    return AVDigits("val", **{"size": 5, **kwargs})


def shapes(**kwargs):
    return ShapesWorld("train", **{"size": 4, "with_audio": False, **kwargs})


def garbage(tmp, data=b"not a checkpoint at all" * 10):
    path = tmp / "c.safetensors"
    path.write_bytes(data)
    return path


def truncated(tmp):
    path = save_checkpoint(tmp / "c.safetensors", {"w": torch.randn(64, 64)})
    path.write_bytes(path.read_bytes()[:-100])
    return path


def plain_safetensors(tmp):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp / "c.safetensors"))
    return tmp / "c.safetensors"


def saved_linear(tmp, shape=(3, 4)):
    return load_checkpoint(save_checkpoint(tmp / "c.safetensors", {"model": nn.Linear(*shape[::-1]).state_dict()}))


def a_notebook(tmp):
    (tmp / "00_empty.ipynb").write_text("{}")  # found by the glob; never run here
    return tmp


def case(id, call, error, pattern):
    return pytest.param(call, error, pattern, id=id)


CASES = [
    # ---- mmlab.data: AV-Digits -------------------------------------------------------------------------------
    case("avdigits-split", lambda tmp: AVDigits("dev"), ValueError, "unknown split 'dev'"),
    case("avdigits-split-int", lambda tmp: AVDigits(3), ValueError, "unknown split 3"),
    case("avdigits-image_noise-neg", lambda tmp: av(image_noise=-0.1), ValueError, r"image_noise .* got -0\.1"),
    case("avdigits-image_noise-str", lambda tmp: av(image_noise="0.1"), TypeError, "image_noise must be a real"),
    case("avdigits-image_noise-bool", lambda tmp: av(image_noise=True), TypeError, "image_noise"),
    case("avdigits-audio_noise-nan", lambda tmp: av(audio_noise=NAN), ValueError, "audio_noise .* got nan"),
    case("avdigits-audio_noise-inf", lambda tmp: av(audio_noise=INF), ValueError, "audio_noise .* got inf"),
    case("avdigits-occlusion-big", lambda tmp: av(image_occlusion=1.5), ValueError, r"image_occlusion .*1\.5"),
    case("avdigits-seed-neg", lambda tmp: av(seed=-1), ValueError, "seed .*-1"),
    case("avdigits-seed-float", lambda tmp: av(seed=1.0), TypeError, "seed must be an int"),
    case("avdigits-seed-bool", lambda tmp: av(seed=True), TypeError, "seed must be an int"),
    case("avdigits-size-zero", lambda tmp: av(size=0), ValueError, "size .*0"),
    case("avdigits-size-big", lambda tmp: av(size=10_000), ValueError, "size.*10000"),
    case("avdigits-size-float", lambda tmp: av(size=2.5), TypeError, "size must be an int"),
    case("avdigits-size-bool", lambda tmp: av(size=True), TypeError, "size must be an int"),
    case("avdigits-root-int", lambda tmp: av(root=3), TypeError, "root must be a path"),
    case("avdigits-root-missing", lambda tmp: av(root=tmp / "nope"), AssetError, "missing data file"),
    case("avdigits-index-out", lambda tmp: av()[5], IndexError, "index 5 .*out of range for 5 items"),
    case("avdigits-index-str", lambda tmp: av()["0"], TypeError, "index must be an int"),
    case("avdigits-index-float", lambda tmp: av()[1.0], TypeError, "index must be an int"),
    case("avdigits-index-bool", lambda tmp: av()[True], TypeError, "index must be an int"),
    case("avdigits-speaker_of-out", lambda tmp: av().speaker_of(99), IndexError, "index 99"),
    case("avdigits-verify-strict", lambda tmp: verify_assets(strict="yes"), TypeError, "strict must be True or"),
    case("avdigits-split-indices", lambda tmp: image_split_indices("dev"), ValueError, "unknown split"),
    # ---- mmlab.data: photos, Shapes-World ---------------------------------------------------------------------
    case("photo-name", lambda tmp: load_photo("lena"), ValueError, "unknown photo 'lena'"),
    case("photo-size-zero", lambda tmp: load_photo(size=0), ValueError, "size must be in"),
    case("photo-size-bool", lambda tmp: load_photo(size=True), TypeError, "size"),
    case("shapes-split", lambda tmp: ShapesWorld("dev"), ValueError, "unknown split 'dev'"),
    case("shapes-size-zero", lambda tmp: shapes(size=0), ValueError, "size must be in"),
    case("shapes-size-bool", lambda tmp: shapes(size=True), TypeError, "size"),
    case("shapes-image_size", lambda tmp: shapes(image_size=7), ValueError, "image_size must be in"),
    case("shapes-audio_seconds-nan", lambda tmp: shapes(audio_seconds=NAN), ValueError, "audio_seconds"),
    case("shapes-audio_seconds-str", lambda tmp: shapes(audio_seconds="1"), TypeError, "audio_seconds"),
    case("shapes-with_audio-int", lambda tmp: shapes(with_audio=1), TypeError, "with_audio must be a bool"),
    case("shapes-video_frames-neg", lambda tmp: shapes(video_frames=-1), ValueError, "video_frames"),
    case("shapes-index-float", lambda tmp: shapes()[1.5], TypeError, "index must be an int"),
    case("shapes-index-out", lambda tmp: shapes()[10], IndexError, "index 10 is out of range"),
    case("shapes-batch-2d", lambda tmp: shapes().batch([[0]]), ValueError, "one-dimensional"),
    case("shapes-batch-float", lambda tmp: shapes().batch([0.5]), TypeError, "integers"),
    case("shapes-video-none", lambda tmp: shapes().render_video(shapes().params([0])), ValueError, "video_frames=0"),
    case("shapes-collate-empty", lambda tmp: collate_shapes_world([]), ValueError, "empty"),
    case("shapes-collate-int", lambda tmp: collate_shapes_world([1, 2]), TypeError, "items must be dicts"),
    case("shapes-collate-keys", lambda tmp: collate_shapes_world([{"a": 1}, {"b": 1}]), ValueError,
         "item 1 has keys"),
    case("shapes-caption-range", lambda tmp: canonical_caption(9, 0, 0), ValueError, "shape must be in"),
    case("shapes-caption-neg", lambda tmp: canonical_caption(0, -1, 0), ValueError, "color must be in"),
    # ---- mmlab.evaluate ----------------------------------------------------------------------------------------
    case("recall-list", lambda tmp: evaluate.recall_at_k([[1.0]], feats()), TypeError, "image_features must be a"),
    case("recall-int", lambda tmp: evaluate.recall_at_k(torch.eye(2).long(), torch.eye(2)), TypeError, "floating"),
    case("recall-1d", lambda tmp: evaluate.recall_at_k(torch.ones(3), feats()), ValueError, "2-D"),
    case("recall-empty", lambda tmp: evaluate.recall_at_k(torch.ones(0, 3), feats()), ValueError, "empty"),
    case("recall-nan", lambda tmp: evaluate.recall_at_k(feats() * NAN, feats()), ValueError, "NaN"),
    case("recall-width", lambda tmp: evaluate.recall_at_k(feats(), feats(4, 2)), ValueError, "width mismatch"),
    case("recall-device", lambda tmp: evaluate.recall_at_k(feats(), feats().to("meta")), ValueError,
         "device mismatch: image_features on cpu, text_features on meta"),
    case("recall-ks-zero", lambda tmp: evaluate.recall_at_k(feats(), feats(), ks=(0,)), ValueError, "positive int"),
    case("recall-ks-bool", lambda tmp: evaluate.recall_at_k(feats(), feats(), ks=(True,)), TypeError, "ks"),
    case("recall-ks-float", lambda tmp: evaluate.recall_at_k(feats(), feats(), ks=(1.5,)), TypeError, "ks"),
    case("recall-ks-int", lambda tmp: evaluate.recall_at_k(feats(), feats(), ks=5), TypeError, "ks must be"),
    case("recall-ks-empty", lambda tmp: evaluate.recall_at_k(feats(), feats(), ks=()), ValueError, "ks"),
    case("recall-owner-range", lambda tmp: evaluate.recall_at_k(feats(2), feats(2), text_to_image=[0, 5]),
         ValueError, "text_to_image"),
    case("recall-owner-neg", lambda tmp: evaluate.recall_at_k(feats(2), feats(2), text_to_image=[-1, 0]),
         ValueError, "text_to_image"),
    case("recall-owner-float", lambda tmp: evaluate.recall_at_k(feats(2), feats(2), text_to_image=[0.0, 1.0]),
         TypeError, "text_to_image must be integer"),
    case("recall-owner-len", lambda tmp: evaluate.recall_at_k(feats(2), feats(3), text_to_image=[0, 1]),
         ValueError, r"text_to_image must have shape \(3,\)"),
    case("recall-count", lambda tmp: evaluate.recall_at_k(feats(2), feats(3)), ValueError, "text_to_image"),
    case("zeroshot-encoder", lambda tmp: evaluate.zero_shot_classifier(None, ["a"]), TypeError,
         "encode_text must be callable"),
    case("zeroshot-names-str", lambda tmp: evaluate.zero_shot_classifier(enc_text, "red"), TypeError,
         "class_names must be a sequence of strings"),
    case("zeroshot-names-empty", lambda tmp: evaluate.zero_shot_classifier(enc_text, []), ValueError,
         "class_names"),
    case("zeroshot-names-dup", lambda tmp: evaluate.zero_shot_classifier(enc_text, ["red", "red"]), ValueError,
         "class_names must not list 'red' twice"),
    case("zeroshot-names-int", lambda tmp: evaluate.zero_shot_classifier(enc_text, ["red", 3]), TypeError,
         "class_names must hold strings"),
    case("zeroshot-templates-str", lambda tmp: evaluate.zero_shot_classifier(enc_text, ["a"], "a {}"),
         TypeError, "templates must be a sequence of strings"),
    case("zeroshot-templates-slot", lambda tmp: evaluate.zero_shot_classifier(enc_text, ["a"], ("no slot",)),
         ValueError, "placeholder"),
    case("zeroshot-templates-field", lambda tmp: evaluate.zero_shot_classifier(enc_text, ["a"], ("a {} {x}",)),
         ValueError, "template 'a {} {x}'"),
    case("zeroshot-templates-empty", lambda tmp: evaluate.zero_shot_classifier(enc_text, ["a"], ()),
         ValueError, "template"),
    case("zeroshot-rows", lambda tmp: evaluate.zero_shot_classifier(lambda p: feats(1), ["a", "b"]), ValueError,
         "1 rows for 2 prompts"),
    case("zeroshot-returns-list", lambda tmp: evaluate.zero_shot_classifier(lambda p: [[1.0]], ["a"]), TypeError,
         r"encode_text\(prompts\) must be a torch.Tensor"),
    case("zeroshot-acc-labels-float", lambda tmp: evaluate.zero_shot_accuracy(feats(2), [0.0, 1.0], enc_text,
                                                                             ["a", "b"]), TypeError, "labels"),
    case("zeroshot-acc-labels-len", lambda tmp: evaluate.zero_shot_accuracy(feats(2), [0], enc_text, ["a", "b"]),
         ValueError, r"labels must have shape \(2,\)"),
    case("zeroshot-acc-flag", lambda tmp: evaluate.zero_shot_accuracy(feats(2), [0, 1], enc_text, ["a", "b"],
                                                                     return_predictions="yes"),
         TypeError, "return_predictions must be True or False"),
    case("probe-acc-C-zero", lambda tmp: probe(C=0), ValueError, "C must be a finite number > 0"),
    case("probe-acc-C-nan", lambda tmp: probe(C=NAN), ValueError, "C must be a finite"),
    case("probe-acc-iter-zero", lambda tmp: probe(max_iter=0), ValueError, "max_iter must be a positive integer"),
    case("probe-acc-iter-float", lambda tmp: probe(max_iter=1.5), TypeError, "max_iter must be a positive integer"),
    case("probe-acc-one-class", lambda tmp: probe(train_labels=[0, 0, 0, 0]), ValueError, "single class"),
    case("probe-acc-width", lambda tmp: probe(test_features=feats(4, 2)), ValueError, "width mismatch"),
    case("confusion-num-zero", lambda tmp: evaluate.confusion_matrix([0], [0], num_classes=0), ValueError,
         "num_classes"),
    case("confusion-num-bool", lambda tmp: evaluate.confusion_matrix([0], [0], num_classes=True), TypeError,
         "num_classes"),
    case("confusion-num-neg", lambda tmp: evaluate.confusion_matrix([0], [0], num_classes=-1), ValueError,
         "num_classes"),
    case("confusion-num-float", lambda tmp: evaluate.confusion_matrix([0], [0], num_classes=2.5), TypeError,
         "num_classes"),
    case("confusion-pred-float", lambda tmp: evaluate.confusion_matrix([0.5], [0]), TypeError,
         "predictions must be integer"),
    case("confusion-pred-neg", lambda tmp: evaluate.confusion_matrix([-1], [0]), ValueError,
         "predictions must be non-negative"),
    case("confusion-labels-2d", lambda tmp: evaluate.confusion_matrix([0], [[0]]), ValueError,
         "labels must have shape"),
    case("confusion-labels-str", lambda tmp: evaluate.confusion_matrix([0, 1], "ab"), TypeError,
         "labels must be integer class indices"),
    case("confusion-len", lambda tmp: evaluate.confusion_matrix([0, 1], [0]), ValueError, "shape"),
    # ---- mmlab.finetune: LoRA ---------------------------------------------------------------------------------
    case("lora-model", lambda tmp: finetune.apply_lora("model", ["0"]), TypeError, "model must be a torch.nn.Module"),
    case("lora-targets-int", lambda tmp: finetune.apply_lora(mlp(), 3), TypeError, "target_modules must be"),
    case("lora-targets-empty", lambda tmp: finetune.apply_lora(mlp(), []), ValueError, "target_modules"),
    case("lora-targets-mixed", lambda tmp: finetune.apply_lora(mlp(), ["0", 3]), TypeError,
         "target_modules must hold strings"),
    case("lora-targets-none", lambda tmp: finetune.apply_lora(mlp(), ["query"]), KeyError, "matches no module"),
    case("lora-targets-norm", lambda tmp: finetune.apply_lora(mlp(), ["2"]), TypeError, "'2' is a LayerNorm"),
    case("lora-twice", lambda tmp: finetune.apply_lora(lora_mlp(), ["0"]), ValueError, "already has a LoRA"),
    case("lora-rank-zero", lambda tmp: finetune.apply_lora(mlp(), ["0"], rank=0), ValueError, "rank"),
    case("lora-rank-float", lambda tmp: finetune.apply_lora(mlp(), ["0"], rank=2.0), TypeError, "rank"),
    case("lora-rank-bool", lambda tmp: finetune.apply_lora(mlp(), ["0"], rank=True), TypeError, "rank"),
    case("lora-rank-one-layer", lambda tmp: finetune.apply_lora(mlp(), ["0", "3"], rank=6), ValueError,
         "^3: rank 6 is larger"),
    case("lora-alpha-neg", lambda tmp: finetune.apply_lora(mlp(), ["0"], alpha=-1), ValueError, "alpha .* got -1"),
    case("lora-alpha-nan", lambda tmp: finetune.apply_lora(mlp(), ["0"], alpha=NAN), ValueError, "alpha"),
    case("lora-alpha-str", lambda tmp: finetune.apply_lora(mlp(), ["0"], alpha="8"), TypeError, "alpha"),
    case("lora-dropout-big", lambda tmp: finetune.apply_lora(mlp(), ["0"], dropout=1.5), ValueError,
         r"dropout .*\[0, 1\)"),
    case("lora-dropout-neg", lambda tmp: finetune.apply_lora(mlp(), ["0"], dropout=-0.1), ValueError, "dropout"),
    case("lora-dropout-str", lambda tmp: finetune.apply_lora(mlp(), ["0"], dropout="0.1"), TypeError, "dropout"),
    case("lora-dropout-bool", lambda tmp: finetune.apply_lora(mlp(), ["0"], dropout=True), TypeError, "dropout"),
    case("lora-freeze-str", lambda tmp: finetune.apply_lora(mlp(), ["0"], freeze_base="no"), TypeError,
         "freeze_base must be True or False"),
    case("lora-layer-conv", lambda tmp: finetune.LoRALinear(nn.Conv1d(2, 2, 1)), TypeError, "wraps an nn.Linear"),
    case("lora-layer-alpha", lambda tmp: finetune.LoRALinear(nn.Linear(4, 4), alpha=0), ValueError, "alpha"),
    case("lora-find-model", lambda tmp: finetune.find_linear(None, "0"), TypeError, "model must be a"),
    case("lora-merge-model", lambda tmp: finetune.merge_lora("model"), TypeError, "model must be a"),
    case("lora-unmerge-model", lambda tmp: finetune.unmerge_lora(None), TypeError, "model must be a"),
    case("lora-remove-flag", lambda tmp: finetune.remove_lora(lora_mlp(), merge="no"), TypeError,
         "merge must be True or False"),
    case("lora-layers-model", lambda tmp: finetune.lora_layers(3), TypeError, "model must be a"),
    case("lora-state-model", lambda tmp: finetune.lora_state_dict(3), TypeError, "model must be a"),
    # ---- mmlab.finetune: freezing, probes, classifier, memory ---------------------------------------------------
    case("freeze-module", lambda tmp: finetune.freeze(3), TypeError, "module must be a torch.nn.Module"),
    case("unfreeze-module", lambda tmp: finetune.unfreeze([]), TypeError, "module must be a torch.nn.Module"),
    case("count-model", lambda tmp: finetune.count_parameters("x"), TypeError, "model must be a"),
    case("trainable-none", lambda tmp: finetune.set_trainable(mlp(), "head"), KeyError, "matches no parameter"),
    case("trainable-empty", lambda tmp: finetune.set_trainable(mlp(), []), ValueError, "patterns"),
    case("trainable-int", lambda tmp: finetune.set_trainable(mlp(), 3), TypeError, "patterns must be"),
    case("lock-empty", lambda tmp: finetune.lock_tower(mlp(), ""), ValueError, "tower must be"),
    case("lock-int", lambda tmp: finetune.lock_tower(mlp(), 3), TypeError, "tower must be a"),
    case("lock-missing", lambda tmp: finetune.lock_tower(mlp(), "audio"), KeyError, "no submodule 'audio'"),
    case("extract-encode", lambda tmp: finetune.extract_features(None, feats()), TypeError,
         "encode must be callable"),
    case("extract-batch-zero", lambda tmp: finetune.extract_features(nn.Linear(3, 2), feats(), 0), ValueError,
         "batch_size"),
    case("extract-batch-bool", lambda tmp: finetune.extract_features(nn.Linear(3, 2), feats(), True), TypeError,
         "batch_size"),
    case("extract-empty-dict", lambda tmp: finetune.extract_features(nn.Linear(3, 2), {}), ValueError,
         "inputs is empty"),
    case("extract-int", lambda tmp: finetune.extract_features(nn.Linear(3, 2), 5), TypeError,
         "inputs must be"),
    case("extract-no-rows", lambda tmp: finetune.extract_features(nn.Linear(3, 2), torch.ones(0, 3)), ValueError,
         "no inputs"),
    case("extract-ragged", lambda tmp: finetune.extract_features(nn.Linear(3, 2), {"a": feats(4), "b": feats(3)}),
         ValueError, "different lengths"),
    case("extract-returns", lambda tmp: finetune.extract_features(lambda b: b.sum(), feats()), ValueError,
         r"\(B, D\)"),
    case("linear-probe-C", lambda tmp: finetune.linear_probe(nn.Identity(), feats(), [0, 1, 0, 1], feats(),
                                                            [0, 1, 0, 1], C=-1), ValueError, "C must be"),
    case("probe-head-list", lambda tmp: finetune.probe_head([[1.0]], [0]), TypeError, "features must be a"),
    case("probe-head-int", lambda tmp: finetune.probe_head(torch.ones(4, 2, dtype=torch.long), [0, 1, 0, 1]),
         TypeError, "features must be floating"),
    case("probe-head-nan", lambda tmp: finetune.probe_head(feats() * NAN, [0, 1, 0, 1]), ValueError, "NaN"),
    case("probe-head-labels-float", lambda tmp: finetune.probe_head(feats(), [0.0, 1.0, 0.0, 1.0]), TypeError,
         "labels must be integer"),
    case("probe-head-labels-len", lambda tmp: finetune.probe_head(feats(), [0, 1]), ValueError, "labels"),
    case("probe-head-labels-gap", lambda tmp: finetune.probe_head(feats(), [0, 2, 0, 2]), ValueError, "0..K-1"),
    case("probe-head-C", lambda tmp: finetune.probe_head(feats(), [0, 1, 0, 1], C=0), ValueError, "C must be"),
    case("probe-head-iter", lambda tmp: finetune.probe_head(feats(), [0, 1, 0, 1], max_iter=0), ValueError,
         "max_iter"),
    case("classifier-backbone", lambda tmp: finetune.Classifier(3, 4, 2), TypeError, "backbone must be a"),
    case("classifier-in-zero", lambda tmp: finetune.Classifier(nn.Identity(), 0, 2), ValueError, "in_dim"),
    case("classifier-in-bool", lambda tmp: finetune.Classifier(nn.Identity(), True, 2), TypeError, "in_dim"),
    case("classifier-classes", lambda tmp: finetune.Classifier(nn.Identity(), 4, 1), ValueError, "num_classes"),
    case("classifier-encode-int", lambda tmp: finetune.Classifier(nn.Identity(), 4, 2, encode=3), TypeError,
         "encode must be"),
    case("classifier-encode-missing", lambda tmp: finetune.Classifier(nn.Identity(), 4, 2, encode="pooled"),
         AttributeError, "no method 'pooled'"),
    case("classifier-head-conv", lambda tmp: finetune.Classifier(nn.Identity(), 4, 2, head=nn.Conv1d(4, 2, 1)),
         TypeError, "head must be an nn.Linear"),
    case("classifier-head-shape", lambda tmp: finetune.Classifier(nn.Identity(), 4, 2, head=nn.Linear(4, 3)),
         ValueError, "head maps 4 -> 3"),
    case("accuracy-model", lambda tmp: finetune.accuracy("x", feats(), [0, 1, 0, 1]), TypeError, "model must be"),
    case("accuracy-labels-float", lambda tmp: finetune.accuracy(nn.Linear(3, 2), feats(), [0.0, 1.0, 0.0, 1.0]),
         TypeError, "labels must be integer"),
    case("accuracy-labels-len", lambda tmp: finetune.accuracy(nn.Linear(3, 2), feats(), [0, 1]), ValueError,
         r"labels must have shape \(4,\)"),
    case("memory-slots", lambda tmp: finetune.training_memory(mlp(), lambda m, b: m(b).sum(), torch.ones(2, 10),
                                                             optimizer_slots=-1), ValueError, "optimizer_slots"),
    case("memory-loss", lambda tmp: finetune.training_memory(mlp(), None, torch.ones(2, 10)), TypeError,
         "loss_fn must be callable"),
    case("memory-model", lambda tmp: finetune.training_memory(None, lambda m, b: 0, 0), TypeError, "model must be"),
    case("activations-fn", lambda tmp: finetune.saved_activation_bytes(None), TypeError, "fn must be callable"),
    # ---- mmlab.viz --------------------------------------------------------------------------------------------
    case("images-empty", lambda tmp: viz.show_images(torch.rand(0, 3, 8, 8)), ValueError, "images is empty"),
    case("images-list", lambda tmp: viz.show_images([image()]), TypeError, "images must be a torch.Tensor"),
    case("images-2d", lambda tmp: viz.show_images(torch.rand(2, 8)), ValueError, r"images must be \(B, C, H, W\)"),
    case("images-channels", lambda tmp: viz.show_images(torch.rand(2, 5, 8, 8)), ValueError, "1 or 3 channels"),
    case("images-uint8", lambda tmp: viz.show_images(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)), TypeError,
         "images must be floating"),
    case("images-nan", lambda tmp: viz.show_images(torch.full((2, 3, 8, 8), NAN)), ValueError, "NaN"),
    case("images-titles", lambda tmp: viz.show_images(torch.rand(2, 3, 8, 8), titles=["a"]), ValueError,
         "titles must have 2"),
    case("images-ncols-zero", lambda tmp: viz.show_images(torch.rand(2, 3, 8, 8), ncols=0), ValueError, "ncols"),
    case("images-ncols-bool", lambda tmp: viz.show_images(torch.rand(2, 3, 8, 8), ncols=True), TypeError, "ncols"),
    case("images-size", lambda tmp: viz.show_images(torch.rand(2, 3, 8, 8), size=0), ValueError, "size"),
    case("patch-2d", lambda tmp: viz.show_patch_grid(torch.rand(8, 8), 4), ValueError, r"image must be \(C, H, W\)"),
    case("patch-zero", lambda tmp: viz.show_patch_grid(image(), 0), ValueError, "patch_size"),
    case("patch-float", lambda tmp: viz.show_patch_grid(image(), 8.0), TypeError, "patch_size"),
    case("patch-divide", lambda tmp: viz.show_patch_grid(image(), 5), ValueError, "divisible by patch_size 5"),
    case("patch-big", lambda tmp: viz.show_patch_grid(image(), 64), ValueError, "patch_size"),
    case("patch-gap", lambda tmp: viz.show_patch_grid(image(), 8, gap=-1), ValueError, "gap"),
    case("spec-3d", lambda tmp: viz.show_spectrogram(torch.rand(2, 8, 10), 16000, 160), ValueError,
         r"spec must be \(n_mels, frames\)"),
    case("spec-rate", lambda tmp: viz.show_spectrogram(torch.rand(8, 10), 0, 160), ValueError, "sample_rate"),
    case("spec-hop", lambda tmp: viz.show_spectrogram(torch.rand(8, 10), 16000, 0), ValueError, "hop_length"),
    case("spec-inf", lambda tmp: viz.show_spectrogram(torch.full((8, 10), -INF), 16000, 160), ValueError, "inf"),
    case("similarity-1d", lambda tmp: viz.show_similarity(torch.rand(4)), ValueError, r"sim must be \(R, C\)"),
    case("similarity-rows", lambda tmp: viz.show_similarity(torch.rand(2, 3), row_labels=["a"]), ValueError,
         "row_labels must have 2"),
    case("similarity-cols", lambda tmp: viz.show_similarity(torch.rand(2, 3), col_labels="abc"), TypeError,
         "col_labels must be a sequence"),
    case("embeddings-1d", lambda tmp: viz.show_embeddings(torch.rand(4), [0, 1, 0, 1]), ValueError,
         r"features must be \(N, D\)"),
    case("embeddings-narrow", lambda tmp: viz.show_embeddings(torch.rand(4, 1), [0, 1, 0, 1]), ValueError,
         "at least 2 columns"),
    case("embeddings-labels-len", lambda tmp: viz.show_embeddings(torch.rand(4, 3), [0, 1]), ValueError,
         r"labels must have shape \(4,\)"),
    case("embeddings-labels-float", lambda tmp: viz.show_embeddings(torch.rand(4, 3), [0.5] * 4), TypeError,
         "labels must be integer"),
    case("embeddings-names", lambda tmp: viz.show_embeddings(torch.rand(4, 3), [0, 1, 2, 3], ["a"]), ValueError,
         "label_names has 1 names for label 3"),
    case("embeddings-markers", lambda tmp: viz.show_embeddings(torch.rand(6, 3), [0] * 6, markers=list(range(6))),
         ValueError, "at most 5 marker groups"),
    case("attention-image", lambda tmp: viz.show_attention(torch.rand(8, 8), torch.rand(2, 2)), ValueError,
         r"image must be \(C, H, W\)"),
    case("attention-3d", lambda tmp: viz.show_attention(image(), torch.rand(1, 2, 2)), ValueError,
         r"attention must be \(gh, gw\)"),
    case("attention-nan", lambda tmp: viz.show_attention(image(), torch.full((2, 2), NAN)), ValueError, "NaN"),
    case("video-3d", lambda tmp: viz.show_video(torch.rand(4, 8, 8)), ValueError, r"video must be \(F, C, H, W\)"),
    # ---- mmlab.run_notebooks, mmlab.doctor --------------------------------------------------------------------
    case("notebooks-timeout", lambda tmp: run_notebooks(tmp, tmp / "out", timeout=0), ValueError, "timeout"),
    case("notebooks-timeout-bool", lambda tmp: run_notebooks(tmp, tmp / "out", timeout=True), TypeError, "timeout"),
    case("notebooks-missing", lambda tmp: run_notebooks(tmp / "nope", tmp / "out"), ValueError,
         "notebook_dir .* is not a folder"),
    case("notebooks-none", lambda tmp: run_notebooks(tmp, tmp / "out"), ValueError, "no notebooks matching"),
    case("notebooks-pattern-empty", lambda tmp: run_notebooks(tmp, tmp / "out", pattern=""), ValueError, "pattern"),
    case("notebooks-pattern-abs", lambda tmp: run_notebooks(tmp, tmp / "out", pattern="/x/*.ipynb"), ValueError,
         "pattern"),
    case("notebooks-out-file", lambda tmp: run_notebooks(a_notebook(tmp), Path(__file__)), ValueError,
         "out_dir .* must be a folder"),
    case("doctor-timeout", lambda tmp: check_kernels(timeout=0), ValueError, "timeout must be a finite number > 0"),
    case("doctor-flag", lambda tmp: run_doctor(check_kernels_too="no"), TypeError, "check_kernels_too must be"),
    # ---- mmlab.train.TrainConfig ------------------------------------------------------------------------------
    case("config-steps-zero", lambda tmp: TrainConfig(steps=0), ValueError, "steps"),
    case("config-steps-float", lambda tmp: TrainConfig(steps=2.0), TypeError, "steps"),
    case("config-steps-bool", lambda tmp: TrainConfig(steps=True), TypeError, "steps"),
    case("config-lr-neg", lambda tmp: TrainConfig(lr=-1), ValueError, "lr"),
    case("config-lr-nan", lambda tmp: TrainConfig(lr=NAN), ValueError, "lr"),
    case("config-lr-inf", lambda tmp: TrainConfig(lr=INF), ValueError, "lr"),
    case("config-lr-str", lambda tmp: TrainConfig(lr="0.1"), TypeError, "lr"),
    case("config-lr-bool", lambda tmp: TrainConfig(lr=True), TypeError, "lr"),
    case("config-decay-neg", lambda tmp: TrainConfig(weight_decay=-1), ValueError, "weight_decay"),
    case("config-decay-nan", lambda tmp: TrainConfig(weight_decay=NAN), ValueError, "weight_decay"),
    case("config-decay-inf", lambda tmp: TrainConfig(weight_decay=INF), ValueError, "weight_decay"),
    case("config-accum-zero", lambda tmp: TrainConfig(grad_accum_steps=0), ValueError, "grad_accum_steps"),
    case("config-accum-bool", lambda tmp: TrainConfig(grad_accum_steps=True), TypeError, "grad_accum_steps"),
    case("config-clip-zero", lambda tmp: TrainConfig(clip_grad_norm=0), ValueError, "clip_grad_norm"),
    case("config-clip-nan", lambda tmp: TrainConfig(clip_grad_norm=NAN), ValueError, "clip_grad_norm"),
    case("config-clip-str", lambda tmp: TrainConfig(clip_grad_norm="1"), TypeError, "clip_grad_norm"),
    case("config-amp", lambda tmp: TrainConfig(amp="fp32"), ValueError, "amp must be one of"),
    case("config-every-neg", lambda tmp: TrainConfig(checkpoint_every=-1), ValueError, "checkpoint_every"),
    case("config-every-nodir", lambda tmp: TrainConfig(checkpoint_every=1), ValueError, "checkpoint_dir"),
    case("config-dir-int", lambda tmp: TrainConfig(checkpoint_dir=3), TypeError, "checkpoint_dir"),
    case("config-seed-neg", lambda tmp: TrainConfig(seed=-1), ValueError, "seed"),
    case("config-seed-bool", lambda tmp: TrainConfig(seed=True), TypeError, "seed"),
    case("config-progress", lambda tmp: TrainConfig(progress="yes"), TypeError, "progress"),
    case("config-schedule", lambda tmp: TrainConfig(schedule="linear"), ValueError, "schedule"),
    case("config-warmup-neg", lambda tmp: TrainConfig(warmup_steps=-1), ValueError, "warmup_steps"),
    case("config-warmup-bool", lambda tmp: TrainConfig(warmup_steps=True), TypeError, "warmup_steps"),
    case("config-floor-big", lambda tmp: TrainConfig(schedule="cosine", min_lr_ratio=2), ValueError, "min_lr_ratio"),
    case("config-floor-nan", lambda tmp: TrainConfig(schedule="cosine", min_lr_ratio=NAN), ValueError,
         "min_lr_ratio"),
    case("config-floor-constant", lambda tmp: TrainConfig(min_lr_ratio=0.5), ValueError, "cosine"),
    case("config-floor-bool", lambda tmp: TrainConfig(schedule="cosine", min_lr_ratio=True), TypeError,
         "min_lr_ratio"),
    # ---- mmlab.checkpoint -------------------------------------------------------------------------------------
    case("ckpt-missing", lambda tmp: load_checkpoint(tmp / "nope.safetensors"), CheckpointError, "does not exist"),
    case("ckpt-folder", lambda tmp: load_checkpoint(tmp), CheckpointError, "is a folder, not a file"),
    case("ckpt-garbage", lambda tmp: load_checkpoint(garbage(tmp)), CheckpointError, "truncated or corrupt"),
    case("ckpt-empty", lambda tmp: load_checkpoint(garbage(tmp, b"")), CheckpointError, "truncated or corrupt"),
    case("ckpt-truncated", lambda tmp: load_checkpoint(truncated(tmp)), CheckpointError, "truncated or corrupt"),
    case("ckpt-foreign", lambda tmp: load_checkpoint(plain_safetensors(tmp)), CheckpointError,
         "not an mmlab checkpoint"),
    case("ckpt-path-int", lambda tmp: load_checkpoint(3), TypeError, "str|PathLike"),
    case("ckpt-device", lambda tmp: load_checkpoint(save_checkpoint(tmp / "c.safetensors", {"w": torch.ones(1)}),
                                                    map_location="bogus"), ValueError, "map_location"),
    case("ckpt-save-list", lambda tmp: save_checkpoint(tmp / "c.safetensors", [1]), TypeError, "state must be a dict"),
    case("ckpt-save-object", lambda tmp: save_checkpoint(tmp / "c.safetensors", {"a": object()}), CheckpointError,
         "cannot store a object"),
    case("ckpt-shape", lambda tmp: load_model_state(nn.Linear(4, 5), saved_linear(tmp)["model"], tmp / "c"),
         CheckpointError, r"other shapes for weight \(3, 4\) in the file vs \(5, 4\) in the model"),
    case("ckpt-keys", lambda tmp: load_model_state(nn.Sequential(nn.Linear(4, 3)), saved_linear(tmp)["model"],
                                                   tmp / "c"),
         CheckpointError, "missing keys 0.weight, 0.bias; unexpected keys weight, bias"),
]


@pytest.mark.parametrize("call, error, pattern", CASES)
def test_bad_input_is_a_clear_error(call, error, pattern, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.setattr("matplotlib.pyplot.subplots", _no_figure)  # every check runs before any plotting
    with pytest.raises(error, match=pattern):
        call(tmp_path)


def _no_figure(*args, **kwargs):
    raise AssertionError("a figure was started before the arguments were checked")


def snapshot(model):
    """Everything a failed mutation must leave as it was: tensors, requires_grad flags, module types, merges."""
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {n: p.requires_grad for n, p in model.named_parameters()},
            [(n, type(m).__name__, getattr(m, "merged", None)) for n, m in model.named_modules()])


def half_frozen():
    model = mlp()
    model[0].requires_grad_(False)  # a mixed state, so that "freeze all" or "unfreeze all" would show
    return model


MUTATIONS = [
    pytest.param(lambda m: finetune.apply_lora(m, ["0", "3"], alpha=-1), ValueError, id="lora-alpha"),
    pytest.param(lambda m: finetune.apply_lora(m, ["0", "3"], dropout=1.5), ValueError, id="lora-dropout"),
    pytest.param(lambda m: finetune.apply_lora(m, ["0", "3"], rank=6), ValueError, id="lora-rank-of-one-layer"),
    pytest.param(lambda m: finetune.apply_lora(m, ["0", "nope"]), KeyError, id="lora-one-pattern-matches-nothing"),
    pytest.param(lambda m: finetune.apply_lora(m, ["0"], freeze_base="no"), TypeError, id="lora-freeze-flag"),
    pytest.param(lambda m: finetune.set_trainable(m, ["0", "nope"]), KeyError, id="trainable-one-pattern-nothing"),
    pytest.param(lambda m: finetune.set_trainable(m, []), ValueError, id="trainable-empty"),
    pytest.param(lambda m: finetune.lock_tower(m, ""), ValueError, id="lock-whole-model"),
    pytest.param(lambda m: finetune.lock_tower(m, "nope"), KeyError, id="lock-missing"),
]


@pytest.mark.parametrize("mutate, error", MUTATIONS)
def test_a_refused_mutation_changes_nothing(mutate, error):
    model = half_frozen()
    before = snapshot(model)
    with pytest.raises(error):
        mutate(model)
    after = snapshot(model)
    assert after[1:] == before[1:]
    assert after[0].keys() == before[0].keys() and all(torch.equal(after[0][k], v) for k, v in before[0].items())


def test_a_refused_lora_removal_changes_nothing():
    model = lora_mlp()
    finetune.merge_lora(model)
    before = snapshot(model)
    with pytest.raises(TypeError, match="merge must be True or False"):
        finetune.remove_lora(model, merge="no")
    after = snapshot(model)
    assert after[1:] == before[1:] and all(torch.equal(after[0][k], v) for k, v in before[0].items())
