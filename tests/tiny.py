"""The tiny model sizes tests build (same as the ``debug`` preset)."""

TINY = dict(vision_hidden=32, vision_layers=1, vision_heads=2, vision_mlp=64, hidden_size=32, num_layers=2, num_heads=2,
            mlp_size=64, code_dim=16, num_codebooks=2, codebook_size=16, quantizer_hidden=64)
