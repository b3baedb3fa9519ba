"""Policy evaluation: sample a model on held-out cases and report reward, the task metric, pass@k and maj@k
(``medreward eval``; docs/training.md).

>>> from medreward.evaluation import pass_at_k
>>> round(pass_at_k(n=4, c=1, k=2), 4)  # 1 - C(3, 2) / C(4, 2)
0.5
"""

from .estimators import maj_at_k, pass_at_k
from .policy_eval import HELDOUT_SEED, PolicyEvalReport, evaluate_policy, heldout_cases
from .sampling import OpenAIGenerator, TransformersGenerator, load_generator

__all__ = [
    "HELDOUT_SEED",
    "OpenAIGenerator",
    "PolicyEvalReport",
    "TransformersGenerator",
    "evaluate_policy",
    "heldout_cases",
    "load_generator",
    "maj_at_k",
    "pass_at_k",
]
