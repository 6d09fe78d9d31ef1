"""muse_hf.pipelines"""
