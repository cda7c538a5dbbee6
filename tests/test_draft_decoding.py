"""Draft-checked greedy decoding (``latentum_world/model/draft.py``) emits exactly the plain greedy tokens,
whatever the draft, and a right draft saves the sequential forwards."""

import numpy as np
import pytest
import torch

from envs.vsp.maps import LEVELS, VSPMap, generate_map
from latentum_world.model.config import LatentUMConfig
from latentum_world.model.language import KVCache
from latentum_world.model.modeling import LatentUMModel
from latentum_world.model.draft import draft_greedy_decode
from tests.tiny import TINY


class CountForwards:
    """Counts the language model's forwards (one per call, whatever its length)."""

    def __init__(self, module):
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.calls += 1


def plain_greedy(model, ids, stop, budget):
    """Reference: one token per forward."""
    cache = KVCache(model.config.num_layers)
    h = model.language_model(model.language_model.embed_tokens(ids), torch.ones_like(ids), cache=cache)[:, -1]
    out = []
    for row in range(ids.shape[0]):
        c = cache.select(torch.tensor([row]))
        nxt, seq = int(model.lm_head(h[row : row + 1]).argmax(-1)), []
        while True:
            seq.append(nxt)
            if stop(nxt) or len(seq) >= budget:
                break
            hr = model.language_model(model.language_model.embed_tokens(torch.tensor([[nxt]])), torch.ones(1, 1), cache=c)
            nxt = int(model.lm_head(hr[:, -1]).argmax(-1))
        out.append(seq)
    return out


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = LatentUMModel(LatentUMConfig(vocab_size=40, pad_token_id=0, eos_token_id=1, img_start_id=2, img_end_id=3,
                                         img_context_id=4, **TINY)).eval()
    for p in model.parameters():  # sharper logits than the init's, so greedy picks are never near-ties
        p.data.mul_(3.0)
    return model


@torch.no_grad()
def test_any_draft_gives_the_plain_greedy_tokens(tiny_model):
    model = tiny_model
    gen = torch.Generator().manual_seed(1)
    tail = torch.randint(5, 40, (3,), generator=gen)  # a prompt ending every row shares
    ids = torch.cat([torch.randint(5, 40, (6, 4), generator=gen), tail.expand(6, -1)], 1)  # (6, 7)
    stop = lambda t: t == 1 or t == 17  # noqa: E731
    budget = 30
    ref = plain_greedy(model, ids, stop, budget)
    assert max(len(r) for r in ref) > 5  # (the check below is not vacuous)
    wrong_middle = [r[: len(r) // 2] + [(r[len(r) // 2] + 1) % 40] + r[len(r) // 2 + 1 :] for r in ref]
    random = [torch.randint(0, 40, (budget,), generator=gen).tolist() for _ in ref]
    for drafts in (ref, wrong_middle, random, [None] * 6, [ref[0], None, random[2], [], wrong_middle[4], ref[5] + [3, 3]]):
        cache = KVCache(model.config.num_layers)
        h = model.language_model(model.language_model.embed_tokens(ids), torch.ones_like(ids), cache=cache)[:, -1]
        assert draft_greedy_decode(model, cache, h, drafts, stop, budget) == ref
        cache = KVCache(model.config.num_layers)  # the shared prompt fed with the drafts instead
        model.language_model(model.language_model.embed_tokens(ids[:, :4]), torch.ones(6, 4), cache=cache)
        assert draft_greedy_decode(model, cache, None, drafts, stop, budget, prompt=tail) == ref
    with pytest.raises(ValueError, match="either h"):
        draft_greedy_decode(model, cache, h, ref, stop, budget, prompt=tail)


@torch.no_grad()
def test_a_right_draft_needs_one_forward(tiny_model):
    model = tiny_model
    ids = torch.randint(5, 40, (4, 5), generator=torch.Generator().manual_seed(2))
    never = lambda t: False  # noqa: E731
    ref = plain_greedy(model, ids, never, 20)
    cache = KVCache(model.config.num_layers)
    h = model.language_model(model.language_model.embed_tokens(ids), torch.ones_like(ids), cache=cache)[:, -1]
    counter = CountForwards(model.language_model)
    assert draft_greedy_decode(model, cache, h, ref, never, 20) == ref
    assert counter.calls == 1  # the whole 20-token continuation checked at once (plain greedy: 19 forwards)
    tail = ids[0, 3:]  # with a shared prompt fed along: the prompt and the continuation in one forward
    ids = torch.cat([ids[:, :3], tail.expand(4, -1)], 1)
    ref = plain_greedy(model, ids, never, 20)
    cache = KVCache(model.config.num_layers)
    model.language_model(model.language_model.embed_tokens(ids[:, :3]), torch.ones(4, 3), cache=cache)
    counter.calls = 0
    assert draft_greedy_decode(model, cache, None, ref, never, 20, prompt=tail) == ref
    assert counter.calls == 1
    counter.handle.remove()


def test_bundled_read_outs_are_the_same_with_or_without_drafts():
    """The bundled model's table read-outs and player pieces of imagined states: identical with the right
    start boards, with other boards and with no drafts; the right drafts take a few forwards, not one per token."""
    from envs.vsp.observation import model_renderer
    from latentum_world.world.loading import load_world_model
    from latentum_world.world.model import LatentWorldModel

    torch.manual_seed(0)
    model, tok = load_world_model()
    wm = LatentWorldModel(model, tok)
    rng = np.random.default_rng(5)
    maps = [generate_map(rng, LEVELS[i % len(LEVELS)]) for i in range(12)]
    others = maps[6:] + maps[:6]
    wm.reset(torch.from_numpy(np.stack([model_renderer(model.config, m.size).render(m) for m in maps])), draft_boards=maps)
    wm.step(torch.randint(4, (12,), generator=torch.Generator().manual_seed(3)))
    embeds = wm.state_embeds
    counter = CountForwards(model.language_model)
    drafted = wm.read_board()  # each row drafted by its start board
    drafted_forwards = counter.calls
    counter.calls = 0
    plain = wm.read_board(embeds)
    plain_forwards = counter.calls
    counter.handle.remove()
    assert None not in plain
    assert drafted == plain == wm.read_board(embeds, draft_boards=others)
    assert drafted_forwards * 5 < plain_forwards
    pieces = wm._player_pieces(embeds)
    assert pieces == wm._player_pieces(embeds, maps) == wm._player_pieces(embeds, others)
    assert pieces == [{(True, False): "%", (False, True): "!"}.get((b.on_goal, b.in_hole), "@") for b in plain]
    with pytest.raises(ValueError, match="one board"):
        wm.read_board(embeds, draft_boards=maps[:3])
    with pytest.raises(ValueError, match="one board"):
        wm.reset(torch.zeros(2, 128, 128, 3, dtype=torch.uint8), draft_boards=[VSPMap(3, (0, 0), (1, 1))])


@torch.no_grad()
def test_generate_text_with_drafts_equals_without(tiny_model):
    """``generate_text(drafts=)``: left-padded prompts, any drafts, short and long budgets, same answers."""
    model = tiny_model
    gen = torch.Generator().manual_seed(4)
    ids = torch.randint(5, 40, (5, 6), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding
    mask[3, :4] = 0
    for budget in (1, 3, 25):
        ref = model.generate_text(ids, mask, max_new_tokens=budget)
        drafts = [ref[0] + [1], None, torch.randint(0, 40, (30,), generator=gen).tolist(), [], ref[4][:2]]
        assert model.generate_text(ids, mask, max_new_tokens=budget, drafts=drafts) == ref
    with pytest.raises(ValueError, match="one draft"):
        model.generate_text(ids, mask, drafts=[None])


def test_answers_drafted_by_the_reference_are_the_models_own():
    """``answer(draft=True)`` on the bundled model: the same table read-outs as plain decoding, right or wrong,
    when the reference answers are right and when they are another board's."""
    from latentum_world.data.prompts import table_question
    from latentum_world.data.understanding import Example, UnderstandingData
    from latentum_world.evaluation.answers import answer
    from latentum_world.world.loading import load_world_model

    model, tok = load_world_model()
    data = UnderstandingData(image_size=model.config.image_size, cell_pixels=model.config.cell_pixels)
    rng = np.random.default_rng(9)
    states = [data.random_state(rng, level=lv) for lv in LEVELS for _ in range(2)]
    images = [data.image(m, last) for m, last in states]
    right = [Example(img, table_question(m)[0], table_question(m)[1], "table", m) for img, (m, _) in zip(images, states)]
    wrong = [Example(ex.image, ex.question, right[(i + 3) % len(right)].answer, "table") for i, ex in enumerate(right)]
    plain = answer(model, tok, right)
    assert answer(model, tok, right, draft=True) == plain == answer(model, tok, wrong, draft=True)
    assert sum(p == ex.answer for p, ex in zip(plain, right)) >= len(right) - 1  # (real read-outs, mostly right)
