"""torch.nn modules wrapping the functional ops."""
from fastprompt.nn.attention_pool import SelfAttentionPooling
from fastprompt.nn.iapt import IAPTPromptGenerator
from fastprompt.nn.rational import RationalActivation
from fastprompt.nn.prompt import DePTPrompt, EPTPrompt, LowRankOffset, SoftPrompt

__all__ = ["IAPTPromptGenerator", "RationalActivation", "SelfAttentionPooling"]
__all__ += ["DePTPrompt", "EPTPrompt", "LowRankOffset", "SoftPrompt"]

from fastprompt.nn.multispace_project import MultiSpaceProjection  # noqa: E402

__all__ += ["MultiSpaceProjection"]
