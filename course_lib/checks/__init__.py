"""The properties each graded exercise is judged by: their weights, the simulated mistakes and their messages.

One engine for two uses: the grader (``grading.judging``, on inputs drawn at grading time, outside the
sandbox) and the student's self-check in the notebook. A module per kind of exercise draws its inputs
(``challenge``), computes what a correct answer gives (``expected_tensors``) and judges recorded outputs
(``verdict``); ``core`` holds the verdict records, ``stats`` the statistical bounds.
"""
