"""`ada-slm compare`: read runs made elsewhere (readers, imported_run), analyse them (analysis), write the report
(report)."""
