"""muse_hf.objectives"""
