"""nbgrader configuration: the course root is this folder (run nbgrader commands from here).

Autograding runs the project's engine instead of executing notebooks in a
kernel next to the grading logic; see autograder/nbgrader_plugin.py.
"""
from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds,
                                    IgnorePattern, LimitOutput, OverwriteCells, OverwriteKernelspec,
                                    SaveAutoGrades)

from autograder.nbgrader_plugin import GradeWithEngine, RepairFromRelease
from autograder.release import COURSE_ID

c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.course_id = COURSE_ID
c.CourseDirectory.root = __file__.rsplit("/", 1)[0]
# Worksheet answers sit in solution regions of cells that are not graded, so that
# release strips them without turning any into a manual-grading item.
c.ClearSolutions.enforce_metadata = False

c.Autograde.sanitize_preprocessors = [RepairFromRelease, ClearOutput, DeduplicateIds, OverwriteKernelspec,
                                      OverwriteCells, CheckCellMetadata]
c.Autograde.autograde_preprocessors = [GradeWithEngine, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
