"""muse_hf.models"""
