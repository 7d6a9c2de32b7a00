"""Which patient a scan belongs to, so that splits, label budgets and folds never put two scans of one
patient on both sides (ACDC's end-diastole and end-systole frames of one heart are nearly the same image:
one in training and one in validation inflates validation Dice without a word).

The default rule covers the names the field uses: a frame, phase or time-point suffix is not part of the
patient (`patient072_frame01` and `patient072_frame12` are `patient072`; `case7_ES`, `case7_t2` are
`case7`). Anything else is its own patient, as nnU-Net treats a case. A user's regular expression
replaces the rule: its group named `patient`, else its first group (a pattern without a group is refused).
"""

from __future__ import annotations

import re

from idealseg.errors import IdealsegError

TIME_SUFFIX = re.compile(r"^(?P<patient>.+?)[_-](?:frame\d+|ED|ES|ed|es|t\d+|tp\d+|time\d+|visit\d+)$")


def compile_rule(pattern: str | None) -> re.Pattern | None:
    """A user's `--patient-regex`, checked once: a broken pattern is a one-line error, not a traceback."""
    if pattern is None:
        return None
    if not isinstance(pattern, str) or not pattern:
        raise IdealsegError(f"--patient-regex {pattern!r}: expected a regular expression, e.g. '(patient\\d+)_'")
    try:
        rule = re.compile(pattern)
    except re.error as exc:
        raise IdealsegError(f"--patient-regex {pattern!r}: not a regular expression ({exc})") from None
    if not rule.groups:
        raise IdealsegError(f"--patient-regex {pattern!r}: has no group; put the patient's part of a case id in "
                            "parentheses, e.g. '^(patient\\d+)_'")
    return rule


def patient_of(case_id: str, rule: re.Pattern | None = None) -> str:
    """The patient of one case id: by the user's rule where given (it must match every case), else by the
    default rule above."""
    if rule is None:
        match = TIME_SUFFIX.match(case_id)
        return match.group("patient") if match else case_id
    match = rule.search(case_id)
    if match is None:
        raise IdealsegError(f"--patient-regex {rule.pattern!r} does not match case {case_id!r}; every case needs "
                            "a patient")
    found = match.group("patient") if "patient" in rule.groupindex else match.group(1)
    if not found:
        raise IdealsegError(f"--patient-regex {rule.pattern!r} gives case {case_id!r} an empty patient id")
    return found


def group_by_patient(case_ids: list[str], rule: re.Pattern | None = None) -> dict[str, list[str]]:
    """{patient: its case ids}, both sorted, for assigning whole patients to splits."""
    groups: dict[str, list[str]] = {}
    for case_id in sorted(case_ids):
        groups.setdefault(patient_of(case_id, rule), []).append(case_id)
    return dict(sorted(groups.items()))
