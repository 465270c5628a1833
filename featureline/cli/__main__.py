"""`python -m featureline.cli ...`: the same as the `featureline` command."""

import sys

from featureline.cli.main import main

sys.exit(main())
