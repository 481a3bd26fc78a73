"""Pure-PyTorch references of every fastprompt op: the specification the kernels are tested
against (in float64) and the eager / torch.compile baselines of the benchmarks."""
from fastprompt.reference.attention_pool import attention_pool_ref
from fastprompt.reference.iapt import iapt_generator_ref, iapt_generator_ref_from_module, iapt_soft_tokens_ref
from fastprompt.reference.rational import rational_ref
from fastprompt.reference.task_arithmetic import combine_ref, dare_keep_mask, merge_ref

__all__ = ["attention_pool_ref", "iapt_generator_ref", "iapt_generator_ref_from_module", "iapt_soft_tokens_ref", "rational_ref"]
__all__ += ["combine_ref", "dare_keep_mask", "merge_ref"]

from fastprompt.reference.multispace_project import multispace_project_folded_ref, multispace_project_ref  # noqa: E402

__all__ += ["multispace_project_ref", "multispace_project_folded_ref"]

from fastprompt.reference.ept import ept_prompt_ref, ept_prompt_ref_from_module  # noqa: E402

__all__ += ["ept_prompt_ref", "ept_prompt_ref_from_module"]
