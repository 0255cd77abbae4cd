"""Code shared by the grader and the students' self-checks.

Nothing here may know the reference solutions: these modules are bundled into
every released notebook.
"""
