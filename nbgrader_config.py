"""nbgrader configuration of the course (read by every `nbgrader` command run from the repository root).

Source notebooks live in solutions/<assignment>/<assignment>.ipynb; `python -m grading.release`
generates the student notebooks into book/exercises/<assignment>/ (the book's exercise pages, opened
in Colab from the repository).
"""

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "init-optim-course"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "book/exercises"

# Per-cell time limit while autograding; a cell that runs longer is interrupted and counts as failed.
# (The optimization notebook loads the shipped trained models; no cell needs more than a minute.)
c.ExecutePreprocessor.timeout = 120
