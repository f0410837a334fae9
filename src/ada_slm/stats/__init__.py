"""The statistics: contrasts of arms with their intervals and tests, pairing by seed, permutation p-values,
power by simulation, factorial effects, the sequential rule. Numbers in, numbers out: nothing here reads a file
or knows a study."""
