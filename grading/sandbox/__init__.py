"""The sandbox: where a student's notebook runs. Takes the sandbox settings and one submission's
runtime and IO folders; gives a kernel confined by bubblewrap, a cgroup and rlimits (``launcher``,
the kernelspec's ``python -m grading.sandbox.launcher``, with ``cgroups``), started from memory by
``kernel_bootstrap``, whose hidden tests call ``probe`` to record what the student's code computes (the
same launcher and bootstrap run the answer cells alone, with ``probe.run_answer_cells`` instead of a kernel);
``lifeline`` ends a grader's child when the grader dies. Its code only records: nothing here scores.

Loaded into every sandboxed kernel (with ``probe``): it must stay free of imports and code.
"""
