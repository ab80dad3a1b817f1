"""Instructor-side tools of the course: hidden-test checks, release of the student notebooks, grading.

Not installed with course_lib (students never need it): it is importable from the repository root
(scripts/test.sh and scripts/build.sh put the root on PYTHONPATH).
"""
