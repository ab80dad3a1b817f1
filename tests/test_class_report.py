"""The class report's grouping of diagnoses: one line per mistake, whatever each student's numbers."""

from grading.reports.class_report import diagnosis


def test_one_mistake_reads_as_one_diagnosis_and_keeps_its_name():
    """Messages that differ only in measured numbers share a diagnosis; the named mistake and the formulas
    (std^2, std**2, 1/fan_in) stay in it; another mistake gets another line."""
    a = ("layer 0 (90 -> 478 units): weight variance 2.11e-06, expected std^2 = 0.00144; it matches std^4: "
         "std is the standard deviation, pass it as such (not std**2)")
    b = ("layer 2 (300 -> 61 units): weight variance 4.3e-05, expected std^2 = 0.0081; it matches std^4: "
         "std is the standard deviation, pass it as such (not std**2)")
    other = "layer 1 (478 -> 300 units): weight variance 0.0013, expected 1/fan_in = 0.0021; it matches 1/fan_out"
    assert diagnosis(a) == diagnosis(b) != diagnosis(other)
    assert "it matches std^4" in diagnosis(a) and "(not std**2)" in diagnosis(a)
    assert "expected 1/fan_in = #" in diagnosis(other) and "2.11" not in diagnosis(a)
    assert diagnosis("value -3.5e+02 at step 10.") == "value # at step #."
    assert diagnosis("") == "(no message)"
