"""``python -m muse_hf.data [--output_dir DIR ...]``: build the synthetic scenes (same as ``muse-hf build-data``)."""

from muse_hf.cli import build_data_main

raise SystemExit(build_data_main())
