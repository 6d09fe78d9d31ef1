"""muse_hf.training"""
