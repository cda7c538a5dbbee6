"""``LatentUMModel``: the understanding model (vision encoder, projector, language model, text head)
with its MBAQ quantizer, as a ``transformers`` ``PreTrainedModel``.

Observed images always enter as continuous features (``mlp1(ViT(image))``) at the ``<img_ctx>``
placeholders; ``features="quantized"`` swaps in MBAQ's ``up_proj(z_q)`` (the MBAQ training student and
the quantized evaluations); ``features="projected"`` gives the image's own MBAQ codes as
``visual_projector(z_q)``, the way the world model's understanding branch reads imagined states (needs
the generation branch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from latentum_world.model.config import LatentUMConfig
from latentum_world.model.depth_head import DepthHead
from latentum_world.model.dual_sequence import dual_attention, dual_positions
from latentum_world.model.draft import draft_greedy_decode
from latentum_world.model.language import KVCache, LanguageModel, RMSNorm
from latentum_world.model.mbaq import MBAQOutput, MBAQuantizer
from latentum_world.model.probe import VisionProbe
from latentum_world.model.vision import VisionEncoder, VisionProjector

FEATURE_KINDS = ("continuous", "quantized", "projected")


@dataclass
class LatentUMOutput:
    logits: torch.Tensor  # (B, T, vocab)
    hidden_states: torch.Tensor  # (B, T, d) final-norm hidden states
    loss: torch.Tensor | None = None  # () answer-token cross-entropy when labels are given
    probe_loss: torch.Tensor | None = None  # () dense perception auxiliary when probe targets are given
    quantizer: MBAQOutput | None = None  # set when features="quantized"


class LatentUMModel(PreTrainedModel):
    config_class = LatentUMConfig
    base_model_prefix = "latentum"
    main_input_name = "input_ids"

    def __init__(self, config: LatentUMConfig):
        super().__init__(config)
        self.vision_model = VisionEncoder(config)
        self.mlp1 = VisionProjector(config)
        self.quantizer = MBAQuantizer(config)
        self.language_model = LanguageModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        # Which latent position an image token holds: added at every image slot (observed or generated),
        # so MBAQ codes carry content only and rotary offsets need not identify the cell.
        self.image_pos_embed = nn.Parameter(torch.zeros(config.latent_positions, config.hidden_size))
        # Every image slot (continuous, quantized or generated) is RMS-normalised before its position is
        # added, so content cannot grow until it drowns the position (it did, to ~300x, without this).
        self.image_norm = RMSNorm(config.hidden_size, config.rms_eps)
        self.vision_probe = VisionProbe(config)
        if config.generation_branch:
            self._build_generation_modules()
        self.post_init()

    # ------------------------------------------------------------------ MoME generation branch
    def _build_generation_modules(self) -> None:
        for layer in self.language_model.layers:
            layer.add_generation_branch()
        c = self.config
        # visual_projector embeds generated latents z_q as language-model inputs (same shape as MBAQ's up_proj)
        self.visual_projector = nn.Sequential(nn.Linear(c.code_dim, c.quantizer_hidden), nn.GELU(), nn.Linear(c.quantizer_hidden, c.hidden_size))
        self.depth_head = DepthHead(c)

    def add_generation_branch(self) -> None:
        """Turn the trained understanding model into MoME: ``*_vision`` copies of every layer's attention
        projections, q/k norms and MLP (initialised from the text weights), a ``visual_projector``
        (initialised from MBAQ's ``up_proj``, so the understanding branch reads generated latents the way
        MBAQ was aligned to) and a freshly initialised depth head."""
        if self.config.generation_branch:
            raise RuntimeError("the model already has its generation branch")
        self.config.generation_branch = True
        self._build_generation_modules()
        self.visual_projector.load_state_dict(self.quantizer.up_proj.state_dict())
        self.depth_head.apply(self._init_weights)

    def project_latents(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(..., K)`` -> generated-image slot embeddings ``visual_projector(z_q)`` ``(..., d)``."""
        return self.visual_projector(self.quantizer.indices_to_latent(codes))

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, VisionEncoder):
            nn.init.normal_(module.pos_embed, std=std)
        elif isinstance(module, LatentUMModel):
            nn.init.normal_(module.image_pos_embed, std=1.0)  # same scale as the normalised slot content

    # ------------------------------------------------------------------ images
    def get_vit_feature(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, H, W, 3)`` uint8 -> ``(N, P, vision_feature_dim)``: the quantizer's input."""
        return self.vision_model(images)

    def extract_feature(self, images: torch.Tensor) -> torch.Tensor:
        """Continuous image embeddings ``(N, P, d)`` for observed images."""
        return self.mlp1(self.get_vit_feature(images))

    def image_embeddings(self, images: torch.Tensor, features: str = "continuous",
                         vit: torch.Tensor | None = None) -> tuple[torch.Tensor, MBAQOutput | None]:
        """Image-slot embeddings ``(N, P, d)`` (and the quantizer's output on the quantized path)."""
        if features not in FEATURE_KINDS:
            raise ValueError(f"features must be one of {FEATURE_KINDS}, got {features!r}")
        vit = self.get_vit_feature(images) if vit is None else vit
        if features == "continuous":
            return self.mlp1(vit), None
        if features == "projected":
            if not self.config.generation_branch:
                raise ValueError('features="projected" reads codes through visual_projector, which only a model with '
                                 "its generation branch has (train the gen stage)")
            return self.project_latents(self.quantizer.encode(vit)), None
        q = self.quantizer(vit)
        return q.x_vq, q

    def embed(self, input_ids: torch.Tensor, image_embeds: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings ``(B, T, d)`` with ``image_embeds`` ``(N, P, d)`` written over the ``<img_ctx>`` slots in order."""
        x = self.language_model.embed_tokens(input_ids)  # (B, T, d)
        slots = input_ids == self.config.img_context_id  # (B, T)
        n_slots = int(slots.sum())
        if image_embeds is None:
            if n_slots:
                raise ValueError(f"input has {n_slots} image placeholders but no images were given")
            return x
        flat = image_embeds.reshape(-1, image_embeds.shape[-1])
        if flat.shape[0] != n_slots:
            raise ValueError(f"input has {n_slots} image placeholders but the images fill {flat.shape[0]}")
        x = x.clone()
        x[slots] = self.slot_embeddings(image_embeds.reshape(-1, self.config.latent_positions, flat.shape[-1])).reshape(-1, flat.shape[-1]).to(x.dtype)
        return x

    def slot_embeddings(self, embeds: torch.Tensor, start: int = 0, pos: torch.Tensor | None = None) -> torch.Tensor:
        """What image slots hold: ``image_norm(embeds) + image_pos_embed``; ``embeds`` ``(..., n, d)`` fill slots
        ``start .. start+n-1`` (``pos``: those ``(n, d)`` position rows, already sliced)."""
        n = embeds.shape[-2]
        return self.image_norm(embeds) + (self.image_pos_embed[start : start + n] if pos is None else pos)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        images: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        features: str = "continuous",
        labels: torch.Tensor | None = None,
        cache: KVCache | None = None,
        gen_mask: torch.Tensor | None = None,
        probe_targets: tuple[torch.Tensor, torch.Tensor] | None = None,
        dual: tuple | None = None,
        vit: torch.Tensor | None = None,
    ) -> LatentUMOutput | tuple[torch.Tensor, torch.Tensor]:
        """:param input_ids: ``(B, T)``; :param images: ``(N, H, W, 3)`` uint8, one per ``<img>`` block in order;
        :param image_embeds: ready ``(N, P, d)`` embeddings instead of ``images``; :param labels: ``(B, T)``, -100 = ignore;
        :param probe_targets: ``(cells (N, P, r*r), levels (N,))`` for the vision probe's auxiliary loss.
        :param dual: ``(u_valid, u_image_embeds, delims, target_codes)``: return :meth:`dual_loss` on ``input_ids`` as U.

        With ``input_ids=None`` only the images are embedded: returns :meth:`image_embeddings`'s ``(image_embeds,
        quantizer output)``, from ``images`` or from their ready ViT features ``vit`` ``(N, P, F)`` (the mbaq stage
        quantizes a whole batch in one call, through its DDP wrapper, then runs the language model on length chunks).
        """
        if dual is not None:
            return self.dual_loss(input_ids, *dual)
        if input_ids is None:
            if images is None and vit is None:
                raise ValueError("nothing to embed: pass input_ids, images or vit")
            return self.image_embeddings(images, features, vit=vit)
        q = probe_loss = None
        if images is not None:
            if image_embeds is not None:
                raise ValueError("pass images or image_embeds, not both")
            vit = self.get_vit_feature(images)  # (N, P, F)
            image_embeds, q = self.image_embeddings(images, features, vit=vit)
            if probe_targets is not None:
                probe_loss = self.vision_probe.loss(vit, *probe_targets)
        x = self.embed(input_ids, image_embeds)
        h = self.language_model(x, attention_mask, gen_mask=gen_mask, cache=cache)  # (B, T, d)
        logits = self.lm_head(h)  # (B, T, vocab)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
        return LatentUMOutput(logits=logits, hidden_states=h, loss=loss, probe_loss=probe_loss, quantizer=q)

    def dual_loss(
        self,
        u_ids: torch.Tensor,
        u_valid: torch.Tensor,
        u_image_embeds: torch.Tensor | None,
        delims: list[int],
        target_codes: torch.Tensor,
        position_weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generation-branch loss on a dual sequence (see :mod:`latentum_world.model.dual_sequence`).

        :param u_ids: ``(B, L_U)`` understanding sequence, LEFT-padded so ``delims`` index every row alike;
        :param u_valid: ``(B, L_U)`` real-token mask; :param u_image_embeds: ``(N, P, d)`` for U's image slots;
        :param delims: U index of each target image's ``<img>``; :param target_codes: ``(B, len(delims), P, K)``.
        :param position_weights: ``(B, len(delims), P)`` loss weight of each target position (default equal).
        Returns the depth-head cross-entropy and the fraction of positions with all K codes right (teacher-forced).
        """
        c = self.config
        b, p = u_ids.shape[0], c.latent_positions
        u = self.embed(u_ids, u_image_embeds)  # (B, L_U, d)
        img = self.language_model.embed_tokens(torch.full((b, 1), c.img_start_id, device=u_ids.device))  # (B, 1, d)
        blocks = []
        for n in range(len(delims)):
            with torch.no_grad():  # the generation branch's inputs are frozen embeddings of the clean codes
                latents = self.project_latents(target_codes[:, n, : p - 1])  # (B, P-1, d)
            blocks.append(torch.cat([img, self.slot_embeddings(latents)], dim=1))  # (B, P, d)
        x = torch.cat([u, *blocks], dim=1)  # (B, T, d)
        lu = u_ids.shape[1]
        gen = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        gen[:, lu:] = True
        h = self.language_model(x, attn_mask=dual_attention(u_valid.bool(), delims, p),
                                positions=dual_positions(u_valid.bool(), delims, p), gen_mask=gen)
        hg = h[:, lu:].reshape(-1, c.hidden_size)  # (B*n*P, d)
        w = None if position_weights is None else position_weights.reshape(-1)  # (B*n*P,)
        return self.depth_head.loss(hg, target_codes.reshape(-1, c.num_codebooks), w)

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def generate_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        images: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        features: str = "continuous",
        max_new_tokens: int = 96,
        drafts: list[list[int] | None] | None = None,
    ) -> list[list[int]]:
        """Greedy answers for LEFT-padded prompts ``(B, T)``; returns each answer's ids up to (not including) ``<eos>``.

        ``drafts`` (per row: guessed answer ids, or ``None``) are checked several tokens per forward
        (:func:`~latentum_world.model.draft.draft_greedy_decode`): faster where they are right, and the
        answers are the same greedy tokens whatever the drafts."""
        if images is not None:
            image_embeds, _ = self.image_embeddings(images, features)
        cache = KVCache(self.config.num_layers)
        x = self.embed(input_ids, image_embeds)
        h = self.language_model(x, attention_mask, cache=cache)
        eos = self.config.eos_token_id
        b = input_ids.shape[0]
        if drafts is not None:
            if len(drafts) != b:
                raise ValueError(f"drafts must hold one draft (or None) per row: {b}, got {len(drafts)}")
            out = draft_greedy_decode(self, cache, h[:, -1], drafts, lambda t: t == eos, max_new_tokens + 1)
            return [seq[:-1] if seq[-1] == eos else seq[:max_new_tokens] for seq in out]
        nxt = self.lm_head(h[:, -1]).argmax(-1)  # (B,)
        done = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
        out: list[list[int]] = [[] for _ in range(b)]
        ones = torch.ones(b, 1, dtype=attention_mask.dtype, device=input_ids.device)
        for _ in range(max_new_tokens):
            done |= nxt == eos
            for i in torch.nonzero(~done).flatten().tolist():
                out[i].append(int(nxt[i]))
            if bool(done.all()):
                break
            h = self.language_model(self.language_model.embed_tokens(nxt[:, None]), ones, cache=cache)
            nxt = self.lm_head(h[:, -1]).argmax(-1)
        return out
