"""torch.nn modules wrapping the functional ops."""
from fastprompt.nn.rational import RationalActivation

__all__ = ["RationalActivation"]
