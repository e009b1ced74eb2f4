import sys

from enigma_build.cli import main

sys.exit(main())
