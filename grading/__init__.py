"""Instructor-side tools of the course: the course's identity, release of the student notebooks, the
probes and verdicts, the sandbox and the grading pipeline (see book/instructors.md).

Not installed with course_lib (students never need it): it is importable from the repository root
(scripts/test.sh and scripts/build.sh put the root on PYTHONPATH).
"""
