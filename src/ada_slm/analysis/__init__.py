"""Numbers from finished runs: statistics, comparisons, reports, audits, next studies (floor 4)."""
