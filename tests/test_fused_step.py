"""The fused greedy step (``latentum_world/world/fused_step.py``) computes what the general forwards compute.

Run eagerly here (``compile=False``: the same graphs without Inductor); ``tests/test_compiled.py`` checks the
compiled env against the eager one episode by episode."""

import numpy as np
import pytest
import torch

from envs.vsp.maps import LEVELS, generate_map
from envs.vsp.observation import model_renderer
from latentum_world.model.vision import written_out_attention
from latentum_world.world.fused_step import FusedStep
from latentum_world.world.loading import load_world_model
from latentum_world.world.model import LatentWorldModel


@pytest.fixture(scope="module")
def bundled():
    model, tok = load_world_model(None, "cpu")
    wm = LatentWorldModel(model, tok, flags_from="questions")
    wm.fused = None  # the general forwards, to compare with
    return wm


def fused_of(wm):
    fq = wm.flag_questions
    return FusedStep(wm.model, wm.action_ids, fq.question_prefix, fq.questions, (fq.yes, fq.no), compile=False)


def first_frames(config, n, seed):
    rng = np.random.default_rng(seed)
    maps = [generate_map(rng, LEVELS[i % len(LEVELS)]) for i in range(n)]
    return torch.from_numpy(np.stack([model_renderer(config, m.size).render(m, None) for m in maps]))


@torch.no_grad()
def test_fused_steps_equal_the_general_forwards(bundled):
    """Codes, P(Yes) to both questions and the next context over three steps of 12 rows of the bundled model."""
    wm, fused = bundled, fused_of(bundled)
    wm.reset(first_frames(wm.model.config, 12, seed=4))
    gen = torch.Generator().manual_seed(0)
    yes = 0
    for _ in range(3):
        actions = torch.randint(4, (12,), generator=gen)
        codes, latents = fused.imagine(wm.cache.clone(), actions)
        context, p_goal, p_hole = fused.understand(latents)
        out = wm.step(actions)  # the general forwards
        assert torch.equal(codes, out.codes)
        assert torch.allclose(latents, wm.model.project_latents(out.codes), atol=1e-5)
        assert torch.allclose(p_goal, out.p_goal, atol=1e-5) and torch.allclose(p_hole, out.p_hole, atol=1e-5)
        for mine, theirs in zip(context.keys + context.values, wm.cache.keys + wm.cache.values):
            assert torch.allclose(mine, theirs, atol=1e-4)
        assert bool(context.key_valid.all()) and context.length == wm.cache.length
        yes += int((out.p_goal > 0.5).sum() + (out.p_hole > 0.5).sum())
    assert yes > 0  # some answers were Yes, so both answers were compared where they matter


@torch.no_grad()
def test_jacobi_rounds_give_the_position_by_position_codes(bundled):
    """From any guess (the current codes, random codes, the answer itself) the rounds end at the codes decoded
    position by position; the right guess takes one round, a wrong one more, never more than P + 1."""
    wm, fused = bundled, fused_of(bundled)
    wm.reset(first_frames(wm.model.config, 8, seed=6))
    gen = torch.Generator().manual_seed(2)
    actions = torch.randint(4, (8,), generator=gen)
    codes, latents = fused.imagine(wm.cache.clone(), actions)
    random = torch.randint(wm.model.config.codebook_size, codes.shape, generator=gen)
    rounds = {}
    for name, guess in (("answer", codes), ("current", wm.codes), ("random", random)):
        before = fused.round_rows
        mine, my_latents = fused.imagine(wm.cache.clone(), actions, guess)
        rounds[name] = (fused.round_rows - before) / 8
        assert torch.equal(mine, codes), name
        assert torch.allclose(my_latents, latents, atol=1e-5), name
    assert rounds["answer"] == 1
    assert 1 < rounds["current"] < rounds["random"] <= wm.model.config.latent_positions + 1
    with pytest.raises(ValueError, match="guess must be"):
        fused.imagine(wm.cache.clone(), actions, codes[:, :-1])


@torch.no_grad()
def test_jacobi_steps_equal_position_by_position_steps(bundled):
    """The fused world model's steps (Jacobi rounds from its memo's guesses) equal those decoded position by
    position: codes, reward and termination over five steps of 16 rows, with resets of ended rows."""
    model, tok = bundled.model, bundled.tok
    fast, slow = LatentWorldModel(model, tok), LatentWorldModel(model, tok)
    slow.jacobi = False
    frames = first_frames(model.config, 32, seed=8)
    for wm in (fast, slow):
        wm.reset(frames[:16])
    gen = torch.Generator().manual_seed(5)
    for _ in range(5):
        actions = torch.randint(4, (16,), generator=gen)
        a, b = fast.step(actions), slow.step(actions)
        assert torch.equal(a.codes, b.codes)
        assert torch.equal(a.reward, b.reward) and torch.equal(a.terminated, b.terminated)
        ended = torch.nonzero(a.terminated).flatten()
        for wm in (fast, slow):
            wm.reset(frames[16 : 16 + len(ended)], rows=ended)
    assert fast.fused.jacobi_rows == 80 and slow.fused.jacobi_rows == 0
    assert len(fast.memo) > 0  # the changed positions were remembered


@torch.no_grad()
def test_fused_ingest_equals_the_general_ingest(bundled):
    """A reset's state context: real first frames' continuous features through the understanding branch."""
    wm = bundled
    frames = first_frames(wm.model.config, 5, seed=2)
    wm.reset(frames)
    context = fused_of(wm).ingest(wm.encode(frames)[0])
    assert context.length == wm.cache.length and bool(context.key_valid.all())
    for mine, theirs in zip(context.keys + context.values, wm.cache.keys + wm.cache.values):
        assert torch.allclose(mine, theirs, atol=1e-4)


@torch.no_grad()
def test_fused_extend_equals_the_general_forward(bundled):
    """Right-padded text after a state context (the read-outs' first forward): the same hidden states and cache;
    a cache with masked-out keys is left to the general forward."""
    wm = bundled
    wm.reset(first_frames(wm.model.config, 4, seed=3))
    ids = torch.randint(10, 200, (4, 9), generator=torch.Generator().manual_seed(0))
    valid = torch.arange(9)[None] < torch.tensor([9, 4, 7, 1])[:, None]
    general, fused = wm.cache.clone(), wm.cache.clone()
    lm = wm.model.language_model
    expected = lm(lm.embed_tokens(ids), valid.long(), cache=general)
    hidden = fused_of(wm).extend(fused, ids, valid)
    assert torch.allclose(hidden[valid], expected[valid], atol=1e-4)  # padding positions are never read
    assert torch.equal(fused.key_valid, general.key_valid)
    for mine, theirs in zip(fused.keys + fused.values, general.keys + general.values):
        assert torch.allclose(mine[:, :, :-9], theirs[:, :, :-9]) and torch.allclose(
            mine[:, :, -9:].transpose(1, 2)[valid], theirs[:, :, -9:].transpose(1, 2)[valid], atol=1e-4)
    assert fused_of(wm).extend(fused, ids, valid) is None  # its padding keys are masked out now


@torch.no_grad()
def test_fused_read_outs_equal_the_general_ones(bundled):
    """Whole-board read-outs of imagined states, drafted by their start boards, with and without the fused forward."""
    model, tok = bundled.model, bundled.tok
    rng = np.random.default_rng(7)
    maps = [generate_map(rng, LEVELS[i % len(LEVELS)]) for i in range(6)]
    frames = torch.from_numpy(np.stack([model_renderer(model.config, m.size).render(m, None) for m in maps]))
    fast = LatentWorldModel(model, tok)
    fast.reset(frames, draft_boards=maps)
    fast.step(torch.tensor([0, 1, 2, 3, 1, 2]))
    boards = fast.read_board()
    assert sum(b is not None for b in boards) >= 5
    assert boards == bundled._decode_boards(fast.state_embeds, 100, maps)  # bundled: the general forwards


@torch.no_grad()
def test_fused_encode_equals_the_model_encoder(bundled):
    """Real frames through the packed copy of the image encoder: the same codes and continuous features."""
    frames = first_frames(bundled.model.config, 24, seed=9)
    fused = fused_of(bundled)
    if not fused.packed:
        pytest.skip("no oneDNN: the model's own encoder runs")
    embeds, codes = fused.encode(frames)
    ref_embeds, ref_codes = bundled.encode(frames)  # bundled: the model's own modules
    assert torch.equal(codes, ref_codes)
    assert torch.allclose(embeds, ref_embeds, atol=1e-4)
    # only the inference copy writes its local attention out; the model keeps PyTorch's fused kernel
    assert all(block.written_out for block in fused.image_encoder[0].blocks)
    assert not any(block.written_out for block in bundled.model.vision_model.blocks)


def test_written_out_attention_equals_the_fused_kernel():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 40, 4, 4, 32).unbind(0)  # (B, h, N, hd): local attention's 4-token windows
    out = written_out_attention(q, k, v)
    assert out.shape == q.shape
    assert torch.allclose(out, torch.nn.functional.scaled_dot_product_attention(q, k, v), atol=1e-6)


def test_fused_step_needs_a_state_context(bundled):
    fused = fused_of(bundled)
    bundled.reset(first_frames(bundled.model.config, 2, seed=1))
    short = bundled.cache.clone()
    short.crop(5)
    with pytest.raises(ValueError, match="state context of 18 positions"):
        fused.imagine(short, torch.tensor([0, 1]))


def test_greedy_steps_are_fused_and_sampled_steps_general(bundled):
    from latentum_world.model.depth_head import Sampling

    model, tok = bundled.model, bundled.tok
    assert LatentWorldModel(model, tok).fused is not None and LatentWorldModel(model, tok).compiled is None
    assert LatentWorldModel(model, tok, compile=True).fused is not None
    sampled = LatentWorldModel(model, tok, compile=True, sampling=Sampling(temperature=1.0))
    assert sampled.fused is None and sampled.compiled is not None  # the general forwards, compiled piece by piece
