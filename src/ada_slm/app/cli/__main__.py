"""`python -m ada_slm.app.cli`."""

from ada_slm.app.cli import main

main()
