"""`python -m mvclip_utils <command>`: the same front door as `mvclip` (and what torchrun's `-m` needs)."""

import sys

from .cli import main

sys.exit(main())
