"""``python -m supervisor`` = the ``shmchannels`` command."""

import sys

from .cli import main

sys.exit(main())
