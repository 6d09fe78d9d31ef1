"""``python -m muse_hf.data [--output_dir DIR ...]``: build the synthetic scenes (same as ``muse-hf build-data``)."""

from muse_hf.data.shapes import main

raise SystemExit(main())
