import sys

from race.cli import main

sys.exit(main())
