import sys

from actionbench.cli import main

sys.exit(main())
