"""Intake: from what students hand in to notebooks nbgrader can run. Takes a folder or an LMS zip;
gives one submission per student with their id and name (``collect``), each notebook repaired
against the release (``metadata``: nbgrader's cell metadata restored, deleted test cells put back),
reduced to what grading runs (``answer_cells``: the release's cells and the answer cells; the student's
other code shown, not run; and the program of the answer cells alone) and the review flags its source
raises (``flags``: delegation, obfuscation, file access).
"""
