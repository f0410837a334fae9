"""`python -m ada_slm.app.cli`."""

import sys

from ada_slm.app.cli import main

sys.exit(main())
