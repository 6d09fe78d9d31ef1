"""muse_hf.evaluation"""
