"""Studies: the study file expanded into runs, and the executors that run them (floor 3)."""
