import sys

from export_pipeline.cli import main

sys.exit(main())
