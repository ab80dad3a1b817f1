"""Reports: what a graded batch gives people. Takes the verdicts and the executed notebooks; gives the
gradebook's scores (``gradebook``), each student's sanitized feedback page (``feedback``), the
Canvas and Moodle import files (``lms``, ``python -m grading.reports.lms``) and the similarity
report (``similarity``, ``python -m grading.reports.similarity``).
"""
