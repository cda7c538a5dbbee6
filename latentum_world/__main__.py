import sys

from latentum_world.cli import main

sys.exit(main())
