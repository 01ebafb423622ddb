import sys

from linksage.cli import main

sys.exit(main())
