import sys

from astrospectra_jax.report.build import main

sys.exit(main())
