"""``LatentUMConfig``: every size of the model, in one ``transformers.PretrainedConfig``."""

from __future__ import annotations

from transformers import PretrainedConfig


FLAG_ANSWERS = ("direct", "interpreted")


class LatentUMConfig(PretrainedConfig):
    """Sizes of LatentUM at CPU scale (the paper's mechanisms, small widths).

    Vision: a ViT over ``image_size`` RGB images in ``patch_size`` patches, then a ``shuffle x shuffle``
    pixel shuffle, so every image gives ``latent_positions = (image_size / patch_size / shuffle)**2``
    positions of ``vision_feature_dim = vision_hidden * shuffle**2`` features, whatever the maze level.
    ``vision_attention="local"`` restricts ViT attention to the ``shuffle x shuffle`` patches of each
    latent position, so a position's features (and MBAQ codes) depend only on its own image region: a
    move then changes the codes of the few positions around the player, not every code ("global":
    ordinary ViT attention over all patches).

    ``cell_pixels`` is the image layout (:mod:`envs.vsp.observation`): ``0`` stretches the board over the
    whole image; ``k > 0`` gives every maze cell ``k x k`` pixels from the top-left corner (black
    beyond the board), so with ``k = patch_size`` each cell is one ViT patch and cell ``(r, c)`` sits at
    the same place at every level.

    Language model (the understanding branch; MoME adds its generation copies): ``hidden_size`` wide,
    ``num_layers`` deep, RMSNorm, rotary positions, SwiGLU MLP.

    ``flag_answers``: how the understanding branch answers "Is the player on the goal?" / "... in a
    hole?" (the answers that make the world model's reward and termination): ``"direct"``, one Yes/No
    token (the session-6 checkpoint); ``"interpreted"``, the player's cell first, as its ``r,c`` token and
    its table piece, then Yes/No (``3,2 ! | Yes``; :func:`~latentum_world.data.prompts.in_hole_question`).

    MBAQ: down-projection to ``code_dim``, product quantization with ``num_codebooks`` codebooks of
    ``codebook_size`` entries, each over ``code_dim / num_codebooks`` channels, up-projection to ``hidden_size``.
    """

    model_type = "latentum"

    def __init__(
        self,
        image_size: int = 128,
        patch_size: int = 16,
        shuffle: int = 2,
        vision_hidden: int = 128,
        vision_layers: int = 4,
        vision_heads: int = 4,
        vision_mlp: int = 512,
        vision_attention: str = "global",
        cell_pixels: int = 0,
        vocab_size: int = 251,
        hidden_size: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        mlp_size: int = 384,
        rope_theta: float = 10000.0,
        rms_eps: float = 1e-6,
        max_position: int = 2048,
        code_dim: int = 64,
        num_codebooks: int = 4,
        codebook_size: int = 64,
        quantizer_hidden: int = 1024,
        commitment_weight: float = 0.25,
        entropy_weight: float = 0.1,
        usage_decay: float = 0.99,
        dead_code_fraction: float = 0.03,
        max_restarts: int = 16,
        generation_branch: bool = False,
        depth_layers: int = 1,
        depth_heads: int = 4,
        initializer_range: float = 0.02,
        pad_token_id: int = 0,
        eos_token_id: int = 2,
        img_start_id: int = 3,
        img_end_id: int = 4,
        img_context_id: int = 5,
        flag_answers: str = "direct",
        **kwargs,
    ):
        if image_size % (patch_size * shuffle):
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size*shuffle = {patch_size * shuffle}")
        if vision_attention not in ("global", "local"):
            raise ValueError(f"vision_attention must be 'global' or 'local', got {vision_attention!r}")
        if not isinstance(cell_pixels, int) or cell_pixels < 0 or cell_pixels > image_size:
            raise ValueError(f"cell_pixels must be an int in [0, image_size], got {cell_pixels!r}")
        if flag_answers not in FLAG_ANSWERS:
            raise ValueError(f"flag_answers must be one of {FLAG_ANSWERS}, got {flag_answers!r}")
        if code_dim % num_codebooks:
            raise ValueError(f"code_dim {code_dim} must split evenly over {num_codebooks} codebooks")
        if hidden_size % num_heads or vision_hidden % vision_heads:
            raise ValueError("hidden sizes must be multiples of their head counts")
        self.image_size, self.patch_size, self.shuffle = image_size, patch_size, shuffle
        self.vision_hidden, self.vision_layers, self.vision_heads, self.vision_mlp = vision_hidden, vision_layers, vision_heads, vision_mlp
        self.vision_attention, self.cell_pixels = vision_attention, cell_pixels
        self.hidden_size, self.num_layers, self.num_heads, self.mlp_size = hidden_size, num_layers, num_heads, mlp_size
        self.rope_theta, self.rms_eps, self.max_position = rope_theta, rms_eps, max_position
        self.code_dim, self.num_codebooks, self.codebook_size = code_dim, num_codebooks, codebook_size
        self.quantizer_hidden = quantizer_hidden
        self.commitment_weight, self.entropy_weight = commitment_weight, entropy_weight
        self.usage_decay, self.dead_code_fraction, self.max_restarts = usage_decay, dead_code_fraction, max_restarts
        self.generation_branch, self.depth_layers, self.depth_heads = generation_branch, depth_layers, depth_heads
        self.initializer_range, self.flag_answers = initializer_range, flag_answers
        self.img_start_id, self.img_end_id, self.img_context_id = img_start_id, img_end_id, img_context_id
        super().__init__(vocab_size=vocab_size, pad_token_id=pad_token_id, eos_token_id=eos_token_id, **kwargs)
        self.vocab_size = vocab_size

    @property
    def grid_side(self) -> int:
        return self.image_size // (self.patch_size * self.shuffle)

    @property
    def latent_positions(self) -> int:
        return self.grid_side**2

    @property
    def vision_feature_dim(self) -> int:
        return self.vision_hidden * self.shuffle**2

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads
