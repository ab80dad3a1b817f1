"""Running: how a batch is graded. Takes the settings and the repaired submissions; gives each
student's row, having run the stages in order: the scratch nbgrader course (``workspace``), nbgrader in
long-lived processes (``autograde_one``), each test cell's result file kept as evidence as that cell
ends (``evidence``), the second run of each submission's answer cells alone, beside the kernel
(``alone``), one submission from execution to feedback page
(``submission``), the canary that checks the whole chain first (``canary``), and the two ways to
run a batch: on this machine (``local``) or on Dask workers (``cluster``, recipes in
``cluster_recipes``).
"""
