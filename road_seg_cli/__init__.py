"""`road-seg`, the offline command line: parses arguments and dispatches to road_seg_core, road_seg_training and
road_seg_ros (see `road_seg_cli.main`)."""
