"""nbgrader configuration of the course (read by every `nbgrader` command run from the repository root).

Source notebooks live in solutions/<assignment>/<assignment>.ipynb; `python -m grading.authoring.release`
generates the student notebooks into book/exercises/<assignment>/ (the book's exercise pages, opened
in Colab from the repository). The course id comes from grading/course.py, the one place it is set.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the repo-local package grading/
from grading.course import COURSE_ID  # noqa: E402

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = COURSE_ID
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "book/exercises"

# Per-cell time limit while autograding; a cell that runs longer is interrupted and counts as failed.
# (The optimization notebook loads the shipped trained models; no cell needs more than a minute.)
c.ExecutePreprocessor.timeout = 120
