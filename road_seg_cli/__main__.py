"""`python -m road_seg_cli ...` and `torchrun -m road_seg_cli train ...` run the `road-seg` command."""
import sys

from road_seg_cli.main import main

sys.exit(main())
