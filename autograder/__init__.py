"""The grading engine: strategies, checks, rubrics, sandboxed worker, reports and CLI."""
