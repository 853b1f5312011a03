import sys

from export_pipeline.cli.main import main

sys.exit(main())
