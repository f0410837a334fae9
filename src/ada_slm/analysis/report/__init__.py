"""A study's report: the writer of report.md / report.html / summary (writer), the answer block (answer), the
decision and criteria sections (decision), the Markdown document and its cells (doc), the plots (plots)."""
