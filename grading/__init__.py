"""Instructor-side tools of the course: the course's identity, release of the student notebooks, the
probes and verdicts, the sandbox and the grading pipeline (see book/instructors.md).

Not installed with course_lib (students never need it): it is importable from the repository root
(scripts/test.sh and scripts/build.sh put the root on PYTHONPATH).
"""

import sys

# jsonschema builds the rfc3987_syntax grammar when it is imported (1.4 s here), only to check the "iri"
# string formats, which no notebook schema uses. Every grading process imports nbformat (nbgrader's
# workers once per submission), so the grammar is left out: jsonschema then skips those two formats.
sys.modules.setdefault("rfc3987_syntax", None)
