"""The properties each graded exercise is judged by: their weights, the simulated mistakes and their messages.

One engine for two uses: the grader (``grading.judging``, on inputs drawn at grading time, outside the
sandbox) and the student's self-check in the notebook. A module per kind of exercise draws its inputs
(``challenge``), computes what a correct answer gives (``expected_tensors``) and judges recorded outputs
(``verdict``); ``core`` holds the verdict records, ``stats`` the statistical bounds.
"""

from typing import Mapping

# Assignment -> exercise key -> the name the student defines, in notebook order (the one list of the graded
# exercises: grading.course builds its Exercise records from it).
EXERCISE_NAMES: Mapping[str, Mapping[str, str]] = {
    "initialization": {key: key for key in ("var_init", "equal_var_init", "xavier_init", "backward_variance_ratio",
                                            "relu_variance_ratio", "kaiming_init")},
    "optimization": {"sgd": "SGD", "sgd_momentum": "SGDMomentum", "adam": "Adam"},
    "deeper": {"orthogonal_init": "orthogonal_init", "lsuv_init": "lsuv_init", "adamw": "AdamW",
               "warmup_cosine_lr": "warmup_cosine_lr"},
}
