"""muse_hf.data"""
