"""Task prompt vectors (arXiv 2408.01119): arithmetic, merging, comparison, initialisation of
prompt tuning from vectors, coefficient search, and multi-tenant prompt banks.

    tau = TaskPromptVector.from_tensors(tuned, init, task="sst2", base_model="llama", init_seed=0)
    start = init_from_vectors(new_init, [tau_a, tau_b], coefs=[0.5, 0.5])
    merged = TaskPromptVector.merge([tau_a, tau_b], "ties", density=0.2)
    bank = PromptBank([tau_a, tau_b], base=init); prompts = bank(["sst2", "imdb"])  # (B, L, d)
"""
from fastprompt.vectors.bank import PromptBank
from fastprompt.vectors.checkpoints import CheckpointNotFoundError, read_prompt
from fastprompt.vectors.coefficients import (CoefficientSearch, LearnedCoefficients, MixingCoefficients,
                                             grid_search_coefficients, learn_coefficients, prompt_objective)
from fastprompt.vectors.compare import (SimilarityTable, across_inits, across_tasks, cosine_similarity,
                                        l2_distance, mean_abs_difference, pairwise)
from fastprompt.vectors.init import (embedding_std, init_from_vectors, prompt_tuning_from_vectors, random_init,
                                     regenerate_init, soft_prompt_from_vectors)
from fastprompt.vectors.vector import MERGE_METHODS, TaskPromptVector

__all__ = [
    "CheckpointNotFoundError", "CoefficientSearch", "LearnedCoefficients", "MERGE_METHODS", "MixingCoefficients",
    "PromptBank", "SimilarityTable", "TaskPromptVector", "across_inits", "across_tasks", "cosine_similarity",
    "embedding_std", "grid_search_coefficients", "init_from_vectors", "l2_distance", "learn_coefficients", "mean_abs_difference",
    "pairwise", "prompt_objective", "prompt_tuning_from_vectors", "random_init", "read_prompt", "regenerate_init",
    "soft_prompt_from_vectors",
]
