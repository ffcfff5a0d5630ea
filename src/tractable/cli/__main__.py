import sys

from tractable.cli import main

sys.exit(main())
