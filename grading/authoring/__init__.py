"""Authoring: from the instructor's source notebooks to what students get. Takes solutions/ (solutions
and hidden tests, nbgrader's markup); gives the student notebooks in book/exercises/ with their Colab
badge and set-up cell (``release``, ``python -m grading.authoring.release``) and the reference
solutions' code, cell by cell (``solutions``).
"""
