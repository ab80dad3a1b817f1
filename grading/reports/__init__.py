"""Reports: what a graded batch gives people. Takes the verdicts and the executed notebooks; gives the
gradebook's scores (``gradebook``), each student's sanitized feedback page (``feedback``), the inert
copies of the graded notebooks that nbgrader's formgrader shows (``safe_notebook``), the Canvas and
Moodle import files (``lms``, ``python -m grading.reports.lms``), the similarity report (``similarity``,
``python -m grading.reports.similarity``), the class report (``class_report``, ``python -m grading.report``),
and every CSV written so that no spreadsheet runs it (``tables``).
"""
