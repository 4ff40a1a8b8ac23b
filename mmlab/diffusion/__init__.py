"""Text-to-image generation on Shapes-World: a small DiT trained by flow matching, classifier-free guidance, a
few-step Euler sampler, and the course's own judges (attribute reader, CLIP score, diversity). Lesson 15."""
from mmlab.diffusion.config import DiTConfig
from mmlab.diffusion.dit import DiT
from mmlab.diffusion.evaluation import PromptSet, measure_run, prompt_set, read_generated, score_images
from mmlab.diffusion.flow import euler_sample, flow_matching_loss, guided_velocity, noisy_images
from mmlab.diffusion.metrics import attribute_accuracy, clip_score, diversity, mentioned, shows_object
from mmlab.diffusion.model import TextToImage
from mmlab.diffusion.reader import ATTRIBUTES, AttributeReader, attribute_targets, regions
from mmlab.diffusion.recipe import TextToImageRecipe, TrainedTextToImage, train_text_to_image
from mmlab.diffusion.text_condition import CaptionEmbedder
from mmlab.diffusion.weights import committed_run, load_run, save_run

__all__ = ["ATTRIBUTES", "AttributeReader", "CaptionEmbedder", "DiT", "DiTConfig", "PromptSet", "TextToImage",
           "TextToImageRecipe", "TrainedTextToImage", "attribute_accuracy", "attribute_targets", "clip_score",
           "committed_run", "diversity", "euler_sample", "flow_matching_loss", "guided_velocity", "load_run",
           "measure_run", "mentioned", "noisy_images", "prompt_set", "read_generated", "regions", "save_run",
           "score_images", "shows_object", "train_text_to_image"]
