"""mmlab.diffusion: the flow-matching path and sampler against exact cases, the DiT's conditioning, the judges'
metrics, bad input, and saved runs (round trip, tampered files)."""
import json
import math

import numpy as np
import pytest
import torch

from mmlab.checkpoint import CheckpointError
from mmlab.data.shapes_render import NOISE_OFFSETS, backgrounds
from mmlab.data.shapes_text import WHERE, canonical_caption
from mmlab.data.shapes_world import ShapesWorld
from mmlab.diffusion import (
    DiT,
    DiTConfig,
    TextToImage,
    TextToImageRecipe,
    attribute_accuracy,
    clip_score,
    diversity,
    euler_sample,
    flow_matching_loss,
    guided_velocity,
    load_run,
    mentioned,
    noisy_images,
    prompt_set,
    regions,
    save_run,
    score_images,
    shows_object,
    train_text_to_image,
)
from mmlab.diffusion.weights import FILES, MANIFEST


def oracle(target: torch.Tensor):
    """The exact velocity field of the straight paths into one image: v(x, t) = (x1 - x) / (1 - t)."""
    def velocity(x, t, caption, drop):
        return (target - x) / (1 - t)[:, None, None, None]
    return velocity


def test_straight_path_endpoints_and_loss_of_the_exact_velocity():
    g = torch.Generator().manual_seed(0)
    x1, x0 = torch.rand(3, 3, 8, 8, generator=g), torch.randn(3, 3, 8, 8, generator=g)
    torch.testing.assert_close(noisy_images(x1, x0, torch.zeros(3)), x0)
    torch.testing.assert_close(noisy_images(x1, x0, torch.ones(3)), x1)
    mid = noisy_images(x1, x0, torch.full((3,), 0.25))
    torch.testing.assert_close(mid, 0.25 * x1 + 0.75 * x0)
    # the loss of the exact field of one image is 0; of a zero field it is E|x1 - x0|^2 > 0
    one = x1[:1].expand(64, -1, -1, -1).contiguous()
    assert flow_matching_loss(oracle(one), one, torch.zeros(64, 4), generator=g) < 1e-8
    zero = flow_matching_loss(lambda x, t, c, d: torch.zeros_like(x), one, torch.zeros(64, 4), generator=g)
    assert zero > 0.5


@pytest.mark.parametrize("steps", [1, 3, 16])
def test_euler_on_the_exact_field_lands_on_the_image(steps):
    x1 = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    out = euler_sample(oracle(x1), torch.zeros(2, 4), (3, 8, 8), steps=steps,
                       generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(out, x1, atol=1e-5, rtol=1e-5)


def test_guidance_combines_conditional_and_unconditional_velocities():
    def velocity(x, t, caption, drop):
        v = torch.ones_like(x) * 2.0
        if drop is not None:
            v[drop] = 0.5  # the unconditional rows
        return v
    x, t, c = torch.zeros(2, 3, 4, 4), torch.zeros(2), torch.zeros(2, 4)
    for w, want in [(0.0, 0.5), (1.0, 2.0), (3.0, 0.5 + 3 * 1.5)]:
        torch.testing.assert_close(guided_velocity(velocity, x, t, c, w), torch.full_like(x, want))


def test_dit_starts_as_zero_and_the_null_caption_replaces_dropped_rows():
    torch.manual_seed(0)
    model = DiT(DiTConfig(dim=32, depth=2, heads=2, cond_dim=8))
    x, t, cap = torch.randn(4, 3, 32, 32), torch.rand(4), torch.randn(4, 8)
    assert torch.count_nonzero(model(x, t, cap)) == 0  # adaLN-Zero: zero gates and head
    for p in model.parameters():  # leave the zero initialisation behind
        torch.nn.init.normal_(p, std=0.1)
    drop = torch.tensor([True, False, True, False])
    out = model(x, t, cap, drop)
    nulled = model(x, t, torch.where(drop[:, None], model.null_caption.detach(), cap))
    torch.testing.assert_close(out, nulled)
    assert not torch.allclose(out[0], model(x, t, cap)[0])
    with pytest.raises(ValueError, match="x must be"):
        model(torch.randn(2, 3, 16, 16), torch.rand(2), torch.randn(2, 8))
    with pytest.raises(ValueError, match="caption"):
        model(x, t, torch.randn(4, 7))
    with pytest.raises(ValueError, match="divisible by patch_size"):
        DiTConfig(image_size=30, patch_size=4)


def test_regions_agree_with_the_captions_place_phrases():
    batch = ShapesWorld("train", size=300, with_audio=False).batch(range(300))
    checked = 0
    for caps, region in zip(batch["captions"], regions(batch["position"]).tolist()):
        phrase = WHERE[region // 3][region % 3]
        for cap in caps:
            places = [p for row in WHERE for p in row if p in cap]
            if places:
                assert places == [phrase], (cap, phrase)
                checked += 1
    assert checked > 100


def test_mentioned_attribute_accuracy_and_diversity_on_hand_cases():
    named = mentioned(["a red circle", "a tiny amber wedge on the left", "the square is blue and large"])
    assert named["size"].tolist() == [False, True, True] and named["region"].tolist() == [False, True, False]
    targets = {a: torch.tensor([0, 1, 2]) for a in ("shape", "color", "size", "region")}
    predicted = {"shape": torch.tensor([0, 1, 0]), "color": torch.tensor([0, 1, 2]),
                 "size": torch.tensor([5, 1, 0]), "region": torch.tensor([9, 1, 9])}
    acc = attribute_accuracy(predicted, targets, named)
    assert acc["shape"] == pytest.approx(2 / 3) and acc["color"] == 1.0
    assert acc["size"] == 0.5 and acc["region"] == 1.0  # only the prompts that name them count
    assert acc["all"] == pytest.approx(2 / 3)  # item 0's size is wrong but unnamed; item 2's shape is wrong
    same = torch.rand(1, 3, 4, 4).expand(3, -1, -1, -1)
    assert diversity(same) == 0.0
    pair = torch.stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])
    assert diversity(pair) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="K >= 2"):
        diversity(pair[:1])


class _Dual:
    """A stand-in dual encoder whose features are given (clip_score's arithmetic only)."""
    def __init__(self, img, txt):
        outer = self

        class Model:
            def eval(self):
                return self

            def encode_image(self, images):
                return outer.img

            def encode_text(self, tokens):
                return outer.txt
        self.img, self.txt, self.model = img, txt, Model()

    def tokenize(self, texts):
        return texts


def test_clip_score_is_two_and_a_half_times_the_clipped_cosine():
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    txt = torch.tensor([[1.0, 1.0], [-1.0, 0.0], [0.0, 1.0]])
    score = clip_score(_Dual(img, txt), torch.zeros(3, 3, 32, 32), ["a", "b", "c"])
    torch.testing.assert_close(score, torch.tensor([2.5 / math.sqrt(2), 0.0, 2.5]))
    with pytest.raises(ValueError, match="one text per image"):
        clip_score(_Dual(img, txt), torch.zeros(3, 3, 32, 32), ["a"])


def test_shuffled_prompts_pair_images_with_other_items_attributes():
    prompts = prompt_set("val", 12)
    shuffled = prompts.shuffled()
    assert shuffled.prompts[1] == prompts.prompts[0] and shuffled.canonical[1] == prompts.canonical[0]
    assert torch.equal(shuffled.targets["shape"][1:], prompts.targets["shape"][:-1])
    assert torch.equal(shuffled.images, prompts.images)


def test_clip_texts_name_exactly_what_the_prompt_names_in_training_words():
    prompts = prompt_set("test", 60)
    for prompt, text, size, region in zip(prompts.prompts, prompts.canonical, prompts.named["size"],
                                          prompts.named["region"]):
        named = mentioned([text])
        assert (bool(named["size"][0]), bool(named["region"][0])) == (bool(size), bool(region)), (prompt, text)
    assert prompts.named["size"].any() and prompts.named["region"].any()  # both kinds were checked
    assert canonical_caption(0, 1, None) == "an orange circle"
    assert canonical_caption(1, 0, None, region=2) == "a red square in the top right corner"
    with pytest.raises(ValueError, match="both a size and a region"):
        canonical_caption(0, 0, 1, region=4)
    with pytest.raises(ValueError, match="region must be in"):
        canonical_caption(0, 0, None, region=9)


def test_shows_object_on_every_real_image_and_on_no_background():
    real = ShapesWorld("val", size=3000, with_audio=False).batch(range(3000))["image"]
    assert shows_object(real).all()
    rng = np.random.default_rng(0)
    level = 0.12 + 0.16 * rng.uniform(size=(3000, 1)) + 0.04 * (rng.uniform(size=(3000, 3)) - 0.5)
    assert not shows_object(backgrounds(level, rng.integers(0, NOISE_OFFSETS, 3000), 32)).any()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        shows_object(real[0])


def test_a_blank_image_is_wrong_on_every_attribute():
    class Reader:  # reads every image as the prompt's own attributes
        def read(self, images):
            return {a: t.clone() for a, t in prompts.targets.items()}

    prompts = prompt_set("val", 4)
    images = prompts.images.clone()
    images[1] = images[1].median()  # one blank image
    dual = _Dual(torch.ones(4, 2), torch.ones(4, 2))
    scores = score_images(images, prompts, Reader(), dual)
    assert scores["object"] == 0.75 and scores["color"] == 0.75 and scores["all"] == 0.75
    assert score_images(prompts.images, prompts, Reader(), dual)["all"] == 1.0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    recipe = TextToImageRecipe(dit=DiTConfig(dim=16, depth=1, heads=2), steps=4, batch_size=8, train_size=64,
                               warmup_steps=1, reader_steps=2, dual_encoder_steps=2)
    trained = train_text_to_image(recipe, monitor=prompt_set("val", 4), eval_every=2)
    folder = tmp_path_factory.mktemp("run")
    save_run(folder, trained, {"metrics": {"note": 1.0}})
    return trained, folder


def test_training_records_evals_and_a_saved_run_loads_with_equal_outputs(tiny_run):
    trained, folder = tiny_run
    assert [row["step"] for row in trained.history["evals"]] == [2, 4]
    assert {"shape", "color", "size", "region", "all", "clip_score"} <= set(trained.history["evals"][0])
    loaded = load_run(folder, embedder=trained.generator.embedder)
    a = trained.generator.generate(["a small red circle", "a blue square"], steps=3, seed=5)
    b = loaded.generator.generate(["a small red circle", "a blue square"], steps=3, seed=5)
    torch.testing.assert_close(a, b)
    assert a.min() >= 0 and a.max() <= 1 and a.shape == (2, 3, 32, 32)
    assert not torch.equal(a, loaded.generator.generate(["a small red circle", "a blue square"], steps=3, seed=6))
    x = ShapesWorld("val", size=4, with_audio=False).batch(range(4))["image"]
    for name in ("shape", "region"):
        assert torch.equal(trained.reader.read(x)[name], loaded.reader.read(x)[name])


def test_a_tampered_or_foreign_weights_file_is_refused(tiny_run, tmp_path):
    trained, folder = tiny_run
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in [*FILES.values(), MANIFEST]:
        (bad / f).write_bytes((folder / f).read_bytes())
    data = bytearray((bad / FILES["reader"]).read_bytes())
    data[-1] ^= 1
    (bad / FILES["reader"]).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="attribute_reader.safetensors does not match its recorded checksum"):
        load_run(bad, embedder=trained.generator.embedder)
    (bad / FILES["reader"]).write_bytes((folder / FILES["reader"]).read_bytes())
    manifest = json.loads((bad / MANIFEST).read_text())
    manifest["recipe"]["steps"] = 5
    (bad / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="another recipe"):
        load_run(bad, embedder=trained.generator.embedder)
    (bad / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="MANIFEST.json is missing"):
        load_run(bad)


def test_bad_sampling_input_is_a_clear_error(tiny_run):
    generator = tiny_run[0].generator
    with pytest.raises(ValueError, match="prompts"):
        generator.generate([])
    with pytest.raises(ValueError, match="empty caption"):
        generator.generate(["a red circle", "  "])
    with pytest.raises(TypeError, match="prompts"):
        generator.generate([3])
    for w in (-0.5, 25.0, float("nan")):
        with pytest.raises(ValueError, match="guidance_scale"):
            generator.generate(["a red circle"], guidance_scale=w)
    for steps in (0, 1001):
        with pytest.raises(ValueError, match="steps"):
            generator.generate(["a red circle"], steps=steps)
    with pytest.raises(TypeError, match="dit"):
        TextToImage("not a model")
    with pytest.raises(ValueError, match="image_size must be 32"):
        TextToImageRecipe(dit=DiTConfig(image_size=16))


def test_the_committed_run_loads_and_its_judges_reproduce_the_recorded_real_image_scores():
    from mmlab.data.assets import sha256_file
    from mmlab.diffusion.weights import COMMITTED_MANIFEST_SHA256, committed_run

    assert sha256_file(committed_run() / MANIFEST) == COMMITTED_MANIFEST_SHA256
    run = load_run()
    recorded = run.history["manifest"]["metrics"]
    for split in ("val", "test"):
        prompts = prompt_set(split, 480)
        for name, pairs in (("real", prompts), ("shuffled", prompts.shuffled())):
            scores = score_images(pairs.images, pairs, run.reader, run.dual_encoder)
            for key, want in recorded[split][name].items():
                assert scores[key] == pytest.approx(want, abs=0.01), (split, name, key)
