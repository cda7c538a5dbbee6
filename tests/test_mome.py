"""MoME generation branch: routing, caching, dual-sequence teacher forcing, seeded sampling."""

import numpy as np
import pytest
import torch
from tiny import TINY

from latentum_world.model.config import LatentUMConfig
from latentum_world.model.depth_head import Sampling
from latentum_world.model.generation import generate_state, image_block_ids
from latentum_world.model.language import KVCache
from latentum_world.model.modeling import LatentUMModel
from latentum_world.training.world_stages import is_generation_param, position_weights
from latentum_world.tokenizer import build_tokenizer



@pytest.fixture(scope="module")
def model():
    tok = build_tokenizer()
    torch.manual_seed(0)
    m = LatentUMModel(LatentUMConfig(vocab_size=len(tok), **TINY))
    m.add_generation_branch()
    # make the branches differ, as after training
    with torch.no_grad():
        for n, p in m.named_parameters():
            if is_generation_param(n):
                p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def prefix(model, b=3):
    c = model.config
    images = torch.randint(0, 256, (b, c.image_size, c.image_size, 3), dtype=torch.uint8)
    ids = torch.cat([image_block_ids(model, b, "cpu"), torch.tensor([[8], [9], [10]])[:b]], dim=1)
    return ids, model.extract_feature(images)


def test_generation_branch_copies_text_weights():
    tok = build_tokenizer()
    m = LatentUMModel(LatentUMConfig(vocab_size=len(tok), **TINY))
    m.add_generation_branch()
    layer = m.language_model.layers[0]
    assert torch.equal(layer.self_attn.q_proj.weight, layer.self_attn.q_proj_vision.weight)
    assert torch.equal(layer.mlp.down.weight, layer.mlp_vision.down.weight)
    assert layer.self_attn.q_proj.weight.data_ptr() != layer.self_attn.q_proj_vision.weight.data_ptr()
    assert torch.equal(m.visual_projector[0].weight, m.quantizer.up_proj[0].weight)
    with pytest.raises(RuntimeError, match="already"):
        m.add_generation_branch()


def test_routing_uses_only_the_marked_branch(model):
    ids, feats = prefix(model)
    x = model.embed(ids, feats)
    gen = torch.zeros(ids.shape, dtype=torch.bool)
    gen[:, -4:] = True
    base = model.language_model(x, gen_mask=gen)
    text_only = model.language_model(x)  # no mask: everything on the text branch
    with torch.no_grad():
        saved = {n: p.clone() for n, p in model.named_parameters() if "_vision" in n}
        for n, p in model.named_parameters():
            if "_vision" in n:
                p.add_(torch.randn_like(p))
        perturbed = model.language_model(x, gen_mask=gen)
        for n, p in model.named_parameters():
            if n in saved:
                p.copy_(saved[n])
    # tokens before the first generation token are untouched; generation tokens change
    torch.testing.assert_close(perturbed[:, :-4], base[:, :-4], atol=0, rtol=0)
    assert (perturbed[:, -4:] - base[:, -4:]).abs().max() > 1e-3
    # and the text branch alone ignores the *_vision weights entirely
    torch.testing.assert_close(text_only[:, :-4], base[:, :-4], atol=0, rtol=0)


def test_incremental_mixed_branch_decoding_equals_full_forward(model):
    ids, feats = prefix(model)
    x = model.embed(ids, feats)
    gen = torch.zeros(ids.shape, dtype=torch.bool)
    gen[:, -5:] = True
    full = model.language_model(x, gen_mask=gen)
    cache = KVCache(model.config.num_layers)
    t = ids.shape[1]
    parts = [model.language_model(x[:, :t - 5], gen_mask=gen[:, :t - 5], cache=cache)]
    for i in range(t - 5, t):
        parts.append(model.language_model(x[:, i : i + 1], gen_mask=gen[:, i : i + 1], cache=cache))
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


def test_generation_hidden_states_match_dual_sequence_teacher_forcing(model):
    """The G block of the dual sequence sees exactly what incremental generation sees."""
    ids, feats = prefix(model, b=2)
    c = model.config
    codes = torch.randint(c.codebook_size, (2, c.latent_positions, c.num_codebooks))
    # incremental: prefix, then <img> and the latents on the generation branch
    cache = KVCache(c.num_layers)
    model.language_model(model.embed(ids, feats), cache=cache)
    gen1 = torch.ones(2, 1, dtype=torch.bool)
    h = [model.language_model(model.language_model.embed_tokens(torch.full((2, 1), c.img_start_id)), gen_mask=gen1, cache=cache)]
    for j in range(c.latent_positions - 1):
        x = model.slot_embeddings(model.project_latents(codes[:, j : j + 1]), start=j)
        h.append(model.language_model(x, gen_mask=gen1, cache=cache))
    inc = torch.cat(h, 1).reshape(-1, c.hidden_size)
    expected = model.depth_head(inc, codes.reshape(-1, c.num_codebooks))
    # dual sequence: U = prefix + <img> (the G block sees U up to its <img>)
    u = torch.cat([ids, torch.full((2, 1), c.img_start_id)], dim=1)
    captured = {}
    orig = model.depth_head.loss
    def spy(hg, tc, weights=None):
        captured["logits"] = model.depth_head(hg, tc)
        return orig(hg, tc, weights)

    model.depth_head.loss = spy
    try:
        model.dual_loss(u, torch.ones_like(u), feats, [u.shape[1] - 1], codes[:, None])
    finally:
        model.depth_head.loss = orig
    torch.testing.assert_close(captured["logits"], expected, atol=1e-5, rtol=1e-5)


def test_generate_state_is_seeded_and_rolls_back(model):
    ids, feats = prefix(model)

    def run(seed):
        cache = KVCache(model.config.num_layers)
        model.language_model(model.embed(ids, feats), cache=cache)
        before = cache.length
        codes = generate_state(model, cache, Sampling(temperature=1.0, generator=torch.Generator().manual_seed(seed)))
        return codes, cache.length - before

    a, grown = run(1)
    b, _ = run(1)
    c, _ = run(2)
    p = model.config.latent_positions
    assert a.shape == (3, p, model.config.num_codebooks)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert grown == p + 2  # only the re-ingested <img> latents </img> remain, on the understanding branch


def test_sampling_options():
    logits = torch.tensor([[0.0, 1.0, 5.0, 2.0]])
    assert Sampling(greedy=True).pick(logits).item() == 2
    g = torch.Generator().manual_seed(0)
    picks = {Sampling(temperature=1.0, top_k=2, generator=g).pick(logits).item() for _ in range(50)}
    assert picks <= {2, 3}
    picks = {Sampling(temperature=1.0, top_p=0.5, generator=g).pick(logits).item() for _ in range(50)}
    assert picks == {2}
    with pytest.raises(ValueError):
        Sampling(temperature=0.0)


def test_depth_head_cached_sampling_matches_teacher_forcing(model):
    h = torch.randn(5, model.config.hidden_size)
    codes = model.depth_head.sample(h, Sampling(greedy=True))
    logits = model.depth_head(h, codes)  # one pass over the whole depth sequence
    assert torch.equal(logits.argmax(-1), codes)


def test_position_weights_change_the_loss(model):
    h = torch.randn(6, model.config.hidden_size)
    codes = torch.randint(model.config.codebook_size, (6, model.config.num_codebooks))
    plain, _ = model.depth_head.loss(h, codes)
    ones, _ = model.depth_head.loss(h, codes, torch.ones(6))
    torch.testing.assert_close(plain, ones)
    only_first, _ = model.depth_head.loss(h, codes, torch.tensor([1.0, 0, 0, 0, 0, 0]))
    first, _ = model.depth_head.loss(h[:1], codes[:1])
    torch.testing.assert_close(only_first, first)


def test_world_position_weights_single_out_the_first_change():
    # 1 transition of 6 positions, 2 codebooks; state t -> t+1
    before = torch.zeros(6, 2, dtype=torch.long)
    arrival_first = before.clone()
    arrival_first[1, 0], arrival_first[4, 1] = 5, 7  # player enters position 1, leaves position 4
    same_position = before.clone()
    same_position[3, 0] = 2  # the move stays inside position 3
    codes = torch.stack([torch.stack([before, arrival_first]), torch.stack([before, same_position])])  # (2, 2, 6, 2)
    w = position_weights(codes, changed_weight=3.0, first_change_weight=9.0)
    assert w.shape == (2, 1, 6)
    assert w[0, 0].tolist() == [1.0, 9.0, 1.0, 1.0, 3.0, 1.0]
    assert w[1, 0].tolist() == [1.0, 1.0, 1.0, 3.0, 1.0, 1.0]  # a lone change is no "first of several"
    torch.testing.assert_close(position_weights(codes, 3.0, 3.0), torch.where(w > 1, 3.0, 1.0))
