"""`python -m ada_slm.cli`."""

import sys

from ada_slm.cli import main

sys.exit(main())
