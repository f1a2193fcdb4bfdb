import sys

from core.groups.cli import main

sys.exit(main())
