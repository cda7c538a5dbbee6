"""Generation stages: the understanding branch stays bit-identical; the debug preset overfits transitions."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from latentum_world.data import prompts
from latentum_world.train_cli import compose_config, train
from latentum_world.training.stages import STAGES, load_model
from latentum_world.world.model import LatentWorldModel

ONLY_SHORT = "{task1: 1, task2: 0, task3: 0, task4: 0, player: 1, goal: 0, on_goal: 1, in_hole: 0, table: 0, next_move: 0}"
FAST = ["preset=debug", "stage.eval_every=1000", "num_threads=1"]


@pytest.fixture(scope="module")
def mbaq_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    w = f"stage.data.weights={ONLY_SHORT}"
    vlm = train("vlm", FAST + [w, f"out_dir={root / 'vlm'}", "stage.steps=2"])
    return train("mbaq", FAST + [w, f"out_dir={root / 'mbaq'}", f"init_from={vlm}", "stage.steps=2"])


def test_understanding_branch_is_untouched_by_gen_and_world(mbaq_model, tmp_path):
    gen = train("gen", FAST + [f"out_dir={tmp_path / 'gen'}", f"init_from={mbaq_model}", "stage.steps=3"])
    world = train("world", FAST + [f"out_dir={tmp_path / 'world'}", f"init_from={gen}", "stage.steps=4", "stage.text_steps=2"])
    before, after_gen, after_world = (load_file(str(p / "model.safetensors")) for p in (mbaq_model, gen, world))
    for k, v in before.items():
        assert torch.equal(v, after_gen[k]), k  # every understanding weight is bit-identical
        assert torch.equal(v, after_world[k]), k
    changed = {k for k in after_gen if k in after_world and not torch.equal(after_gen[k], after_world[k])}
    assert changed and all("_vision" in k or k.startswith(("depth_head.", "visual_projector.")) for k in changed)
    assert any(k.startswith("visual_projector.") for k in changed)  # the text phase ran
    # and the understanding outputs on a fixed batch are bit-identical
    m0, tok = load_model(mbaq_model)
    m1, _ = load_model(world)
    stage = STAGES["vlm"](compose_config("vlm", FAST + [f"stage.data.weights={ONLY_SHORT}"]))
    stage._finish_build(m0, tok)
    batch = stage.batch(0, 0)
    kw = {k: batch[k] for k in ("input_ids", "attention_mask", "images")}
    assert torch.equal(m0.eval()(**kw).logits, m1.eval()(**kw).logits)


def test_debug_world_stage_overfits_a_few_transitions(mbaq_model, tmp_path):
    cfg = compose_config("world", FAST + [f"out_dir={tmp_path}", f"init_from={mbaq_model}", "stage.text_steps=0",
                                           "stage.batch_size=4", "stage.transitions=1"])
    stage = STAGES["world"](cfg)
    model, _ = stage.build(None)
    batch = stage.batch(0, 0)
    params = stage.trainable_parameters(model)
    opt = torch.optim.Adam(params, lr=3e-3)
    torch.manual_seed(0)
    for _ in range(300):
        loss, metrics = stage.compute_loss(model, model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if metrics["world/code_accuracy"] == 1.0:
            break
    assert metrics["world/code_accuracy"] == 1.0, metrics


def test_stages_ask_the_flag_questions_in_the_models_format(mbaq_model, tmp_path):
    """vlm/mbaq batches and the world stage's text steps answer "on the goal?" / "in a hole?" in the
    format the model's config names (a direct-format text step would train the projector against it)."""
    rng = np.random.default_rng(0)
    world = STAGES["world"](compose_config("world", FAST + [f"out_dir={tmp_path}", f"init_from={mbaq_model}"]))
    model, tok = world.build(None)
    mbaq = STAGES["mbaq"](compose_config("mbaq", FAST + [f"out_dir={tmp_path / 'm'}", f"init_from={mbaq_model}"]))
    mbaq.build(None)
    assert model.config.flag_answers == "interpreted"  # configs/model/default.yaml, kept by every stage
    for data in (world.text_data, mbaq.data):
        for kind in ("on_goal", "in_hole"):
            answer = data.example(rng, kind).answer
            assert len(tok.encode_text(answer)) == 3 and answer.split()[-1] in ("Yes", "No"), answer


def test_world_model_interface(mbaq_model, tmp_path):
    gen = train("gen", FAST + [f"out_dir={tmp_path / 'gen'}", f"init_from={mbaq_model}", "stage.steps=1"])
    model, tok = load_model(gen)
    wm = LatentWorldModel(model, tok)
    images = torch.from_numpy(np.zeros((2, 128, 128, 3), dtype=np.uint8))
    codes = wm.reset(images)
    assert codes.shape == (2, 16, 2)
    out = wm.step(torch.tensor([1, 2]))
    assert out.codes.shape == (2, 16, 2) and out.reward.shape == (2,) and out.terminated.dtype == torch.bool
    assert ((0 <= out.p_goal) & (out.p_goal <= 1)).all()
    with pytest.raises(ValueError, match="ints in 0..3"):
        wm.step(torch.tensor([4, 0]))
    with pytest.raises(ValueError, match="generation branch"):
        LatentWorldModel(*load_model(mbaq_model))


@pytest.mark.parametrize("flag_answers", ["direct", "interpreted"])
def test_answer_flags_equal_asking_each_question_in_full(mbaq_model, tmp_path, flag_answers):
    """The cached, prefix-sharing reward/termination questions give the probabilities of a plain forward
    (``interpreted``: after greedily writing the player's cell, two tokens, by plain forwards)."""
    from latentum_world.data.prompts import in_hole_question, on_goal_question
    from latentum_world.model.generation import image_block_ids
    from envs.vsp.maps import VSPMap

    gen = train("gen", FAST + [f"out_dir={tmp_path / 'gen'}", f"init_from={mbaq_model}", "stage.steps=1"])
    model, tok = load_model(gen)
    model.config.flag_answers = flag_answers
    wm = LatentWorldModel(model, tok)
    assert wm.flag_questions.interpretation_tokens == (2 if flag_answers == "interpreted" else 0)
    torch.manual_seed(1)
    codes = torch.randint(model.config.codebook_size, (3, model.config.latent_positions, model.config.num_codebooks))
    embeds = model.project_latents(codes)
    p_goal, p_hole = wm.answer_flags(embeds)
    texts = wm.flag_questions.answers(embeds, tok)  # the greedy answers, for diagnosis
    yes, no = tok.convert_tokens_to_ids(["Yes", "No"] if flag_answers == "direct" else [" Yes", " No"])
    for which, (question, got) in enumerate(((on_goal_question, p_goal), (in_hole_question, p_hole))):
        q = torch.tensor(tok.encode_text(question(VSPMap(3, (0, 0), (1, 1)))[0]))[None].expand(3, -1)
        ids = torch.cat([image_block_ids(model, 3, "cpu"), q], dim=1)
        start = ids.shape[1]
        with torch.no_grad():
            for _ in range(wm.flag_questions.interpretation_tokens):
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), image_embeds=embeds).logits[:, -1]
                ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), image_embeds=embeds).logits[:, -1]
        want = logits[:, [yes, no]].softmax(-1)[:, 0]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        greedy = torch.cat([ids[:, start:], logits.argmax(-1, keepdim=True)], dim=1)
        assert [t[which] for t in texts] == [tok.decode_text(row) for row in greedy.tolist()]


def test_decoder_stage_feature_loss_reaches_only_the_decoder(mbaq_model, tmp_path):
    cfg = compose_config("decoder", FAST + [f"out_dir={tmp_path}", f"init_from={mbaq_model}", "stage.batch_size=2",
                                            "stage.feature_weight=0.05", "stage.feature_from_step=0"])
    stage = STAGES["decoder"](cfg)
    decoder, _ = stage.build(None)
    loss, metrics = stage.compute_loss(decoder, decoder, stage.batch(0, 0))
    loss.backward()
    assert metrics["losses/feature"] > 0 and loss.item() > metrics["losses/mse"]
    assert all(p.grad is not None for p in decoder.parameters())
    assert all(p.grad is None for p in stage.world.parameters())  # the model stays frozen


def test_decoder_readout_loss_reaches_only_the_decoder(mbaq_model, tmp_path):
    cfg = compose_config("decoder", FAST + [f"out_dir={tmp_path}", f"init_from={mbaq_model}", "stage.batch_size=2",
                                            "stage.feature_weight=0", "stage.readout_weight=1.0", "stage.readout_from_step=0"])
    stage = STAGES["decoder"](cfg)
    decoder, _ = stage.build(None)
    batch = stage.batch(0, 0)
    assert (batch["labels"] != -100).any()  # the board read-out's answer tokens
    loss, metrics = stage.compute_loss(decoder, decoder, batch)
    loss.backward()
    assert metrics["losses/readout_kl"] > 0 and "losses/feature" not in metrics
    torch.testing.assert_close(loss.item(), metrics["losses/mse"] + metrics["losses/readout_kl"], rtol=1e-5, atol=1e-7)
    assert all(p.grad is not None for p in decoder.parameters())
    assert all(p.grad is None for p in stage.world.parameters())  # the model stays frozen
    early = STAGES["decoder"](compose_config("decoder", FAST + [f"init_from={mbaq_model}", "stage.readout_weight=1.0",
                                                                "stage.readout_from_step=5"]))
    early.build(None)
    assert "losses/readout_kl" not in early.compute_loss(decoder, decoder, early.batch(4, 0))[1]
    assert "losses/readout_kl" in early.compute_loss(decoder, decoder, early.batch(5, 0))[1]


def test_decoder_fine_tunes_from_a_given_decoder(mbaq_model, tmp_path):
    first = train("decoder", FAST + [f"out_dir={tmp_path / 'a'}", f"init_from={mbaq_model}", "stage.steps=1", "stage.batch_size=2"])
    cfg = compose_config("decoder", FAST + [f"init_from={mbaq_model}", f"stage.decoder_from={first}"])
    stage = STAGES["decoder"](cfg)
    decoder, _ = stage.build(None)
    saved = load_file(str(first / "model.safetensors"))
    assert saved and all(torch.equal(v, decoder.state_dict()[k]) for k, v in saved.items())
    metrics = stage.evaluate(decoder)  # PSNR and how often the model reads the decoded image as the real board
    assert metrics["psnr_db"] > 0 and 0.0 <= metrics["readout_decoded"] <= 1.0
    bad = compose_config("decoder", FAST + [f"init_from={mbaq_model}", f"stage.decoder_from={tmp_path / 'none'}"])
    with pytest.raises(FileNotFoundError, match="no pixel decoder"):
        STAGES["decoder"](bad).build(None)


def test_decoder_context_layers_let_a_position_see_the_others():
    from latentum_world.world.decoder import PixelDecoder, PixelDecoderConfig

    torch.manual_seed(0)
    z = torch.randn(1, 16, 8)
    z2 = z.clone()
    z2[0, 0] += 3.0  # the top-left position's codes
    for layers, far_changes in ((0, False), (1, True)):
        dec = PixelDecoder(PixelDecoderConfig(code_dim=8, grid_side=4, image_size=32, channels=[8, 8, 8], context_layers=layers)).eval()
        grids = []
        dec.blocks[0].register_forward_hook(lambda mod, inp, out: grids.append(inp[0]))  # (1, C, 4, 4) before upsampling
        with torch.no_grad():
            dec(z), dec(z2)
        a, b = grids
        assert not torch.equal(a[..., 0, 0], b[..., 0, 0])  # its own grid cell always changes
        assert (not torch.equal(a[..., 1:, 1:], b[..., 1:, 1:])) == far_changes  # the others: only through attention


def test_decoder_feature_loss_starts_at_feature_from_step(mbaq_model, tmp_path):
    cfg = compose_config("decoder", FAST + [f"out_dir={tmp_path}", f"init_from={mbaq_model}", "stage.batch_size=2",
                                            "stage.feature_weight=0.05", "stage.feature_from_step=3"])
    stage = STAGES["decoder"](cfg)
    decoder, _ = stage.build(None)
    early = stage.compute_loss(decoder, decoder, stage.batch(2, 0))[1]
    late = stage.compute_loss(decoder, decoder, stage.batch(3, 0))[1]
    assert "losses/feature" not in early and late["losses/feature"] > 0


def test_text_steps_are_interleaved_with_text_every():
    cfg = compose_config("world", FAST + ["stage.text_steps=3", "stage.text_every=4", "stage.steps=20"])
    stage = STAGES["world"](cfg)
    phases = "".join("t" if stage.in_text_phase(s) else "g" for s in range(15))
    assert phases == "tttgggtgggtgggt"
    cfg = compose_config("world", FAST + ["stage.text_steps=2", "stage.text_every=0"])
    assert [STAGES["world"](cfg).in_text_phase(s) for s in range(5)] == [True, True, False, False, False]


def test_lang_stage_trains_only_the_text_branch_and_reads_codes(mbaq_model, tmp_path):
    """Stage ``lang`` (the paper's lang-only step): text-branch layer weights and the text head change;
    the vision side, quantizer, embeddings, shared norms, visual_projector and the generation branch do not."""
    gen = train("gen", FAST + [f"out_dir={tmp_path / 'gen'}", f"init_from={mbaq_model}", "stage.steps=2"])
    lang = train("lang", FAST + [f"out_dir={tmp_path / 'lang'}", f"init_from={gen}", "stage.steps=3", "stage.code_share=0.5",
                                 f"stage.data.weights={ONLY_SHORT}"])
    before, after = (load_file(str(p / "model.safetensors")) for p in (gen, lang))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and any(k.startswith("lm_head.") for k in changed)
    assert any(".self_attn.q_proj." in k for k in changed) and any(".mlp." in k for k in changed)
    for k in changed:
        assert k.startswith("lm_head.") or (k.startswith("language_model.layers.") and "_vision" not in k and "layernorm" not in k), k
    # the lang stage's loss mixes both ways of entering a state: as codes and as observed features
    stage = STAGES["lang"](compose_config("lang", FAST + [f"init_from={gen}", "stage.batch_size=8", "stage.code_share=0.5",
                                                           f"stage.data.weights={ONLY_SHORT}"]))
    model, tok = stage.build(None)
    batch = stage.batch(0, 0)
    assert 0 < int(batch["as_codes"].sum()) < 8
    embeds = stage.image_embeds(model, batch["images"], batch["as_codes"], 0)
    cont, _ = model.image_embeddings(batch["images"], "continuous")
    proj, _ = model.image_embeddings(batch["images"], "projected")
    rows = batch["as_codes"]
    assert torch.equal(embeds[rows], proj[rows]) and torch.equal(embeds[~rows], cont[~rows])


def test_lang_read_out_leaves_the_world_models_codes_bit_identical(mbaq_model, tmp_path):
    """``stage.train=read_out`` trains the text head and the last layer's text-only pieces: nothing a
    generation-branch token reads, so imagined codes are bit-identical while text answers change."""
    gen = train("gen", FAST + [f"out_dir={tmp_path / 'gen'}", f"init_from={mbaq_model}", "stage.steps=1"])
    lang = train("lang", FAST + [f"out_dir={tmp_path / 'lang'}", f"init_from={gen}", "stage.steps=3", "stage.lr=1e-2",
                                 "stage.train=read_out", f"stage.data.weights={ONLY_SHORT}"])
    before, after = (load_file(str(p / "model.safetensors")) for p in (gen, lang))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    last = f"language_model.layers.{load_model(gen)[0].config.num_layers - 1}."
    assert "lm_head.weight" in changed and any(k.startswith(last + "mlp.") for k in changed)
    assert all(k.startswith(("lm_head.", last + "self_attn.q_", last + "self_attn.o_proj.", last + "mlp.")) for k in changed), changed
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (3, 128, 128, 3), dtype=np.uint8))
    rollouts = []
    for path in (gen, lang):
        wm = LatentWorldModel(*load_model(path))
        steps = [wm.reset(images)] + [wm.step(torch.tensor(a)) for a in ([0, 1, 2], [3, 3, 1])]
        rollouts.append(steps)
    (c0, *s0), (c1, *s1) = rollouts
    assert torch.equal(c0, c1)
    assert all(torch.equal(a.codes, b.codes) for a, b in zip(s0, s1))
    assert any(not torch.equal(a.p_goal, b.p_goal) for a, b in zip(s0, s1))  # the read-out did train
    with pytest.raises(ValueError, match="stage.train must be one of"):
        STAGES["lang"](compose_config("lang", FAST + [f"init_from={gen}", "stage.train=everything"]))


def test_projected_features_need_the_generation_branch(mbaq_model):
    model, _ = load_model(mbaq_model)
    images = torch.zeros(1, model.config.image_size, model.config.image_size, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="generation branch"):
        model.image_embeddings(images, "projected")


def test_lang_stage_can_switch_the_flag_answer_format(mbaq_model, tmp_path):
    """``stage.flag_answers=direct`` on an interpreted model: its goal / hole questions are then asked and
    saved in the direct format (one Yes/No token), which ``FlagQuestions`` follows; a bad name is refused."""
    gen = train("gen", FAST + [f"out_dir={tmp_path / 'gen'}", f"init_from={mbaq_model}", "stage.steps=1"])
    cfg = compose_config("lang", FAST + [f"init_from={gen}", f"out_dir={tmp_path / 'lang'}", "stage.flag_answers=direct"])
    stage = STAGES["lang"](cfg)
    model, tok = stage.build(None)
    assert model.config.flag_answers == "direct"
    answer = stage.data.example(np.random.default_rng(0), "in_hole").answer
    assert answer in ("Yes", "No")
    with pytest.raises(ValueError, match="flag_answers"):
        STAGES["lang"](compose_config("lang", FAST + [f"init_from={gen}", "stage.flag_answers=verbose"])).build(None)


def test_world_stage_can_keep_visual_projector_frozen(mbaq_model, tmp_path):
    gen = train("gen", FAST + [f"out_dir={tmp_path / 'gen'}", f"init_from={mbaq_model}", "stage.steps=1"])
    frozen = ["stage.train_projector=false", "stage.text_steps=0", "stage.text_every=0"]
    world = train("world", FAST + [f"out_dir={tmp_path / 'world'}", f"init_from={gen}", "stage.steps=2", *frozen])
    before, after = (load_file(str(p / "model.safetensors")) for p in (gen, world))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("_vision" in k or k.startswith("depth_head.") for k in changed), changed
    with pytest.raises(ValueError, match="text_steps=0"):
        STAGES["world"](compose_config("world", FAST + [f"init_from={gen}", "stage.train_projector=false"])).build(None)


def _near_hole(m) -> bool:
    r, c = m.player
    return (r, c) in m.holes or any((r + dr, c + dc) in m.holes for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0)))


def test_decoder_stage_oversamples_states_near_holes():
    rng = np.random.default_rng(0)
    plain = STAGES["decoder"](compose_config("decoder", FAST)).examples(rng, 64)
    hard = STAGES["decoder"](compose_config("decoder", FAST + ["stage.near_hole_share=1.0"])).examples(rng, 64)
    assert all(ex.task == "table" and ex.answer == prompts.to_table(ex.map) for ex in hard)
    with_holes = [ex.map for ex in hard if ex.map.holes]
    assert len(with_holes) > 48 and all(_near_hole(m) for m in with_holes)
    assert any(m.player in m.holes for m in with_holes) and any(m.player not in m.holes for m in with_holes)
    assert sum(_near_hole(ex.map) for ex in plain) < 48  # the default stream leaves such states to chance
    with pytest.raises(ValueError, match="near_hole_share"):
        STAGES["decoder"](compose_config("decoder", FAST + ["stage.near_hole_share=1.5"]))


def test_final_line_weights_pick_the_tokens_after_the_last_newline():
    from latentum_world.training.lang_stage import final_line_weights

    nl, x = 7, -100
    labels = torch.tensor([[x, x, 5, nl, 6, nl, 8, 9],   # two interpretation lines, then the final line 8 9
                           [x, x, x, x, x, 4, 2, x]])    # a one-line answer (then padding): all of it is final
    w = final_line_weights(labels, nl, 5.0)
    assert w.tolist() == [[0, 0, 1, 1, 1, 1, 5, 5], [0, 0, 0, 0, 0, 5, 5, 0]]
    assert torch.equal(final_line_weights(labels, nl, 1.0), (labels != x).float())


def test_lang_final_line_weight_near_one_gives_the_plain_loss(mbaq_model, tmp_path):
    """The weighted path (per-token CE summed over length chunks, divided by the batch's total weight)
    is the plain answer-token mean when the weight is ~1, and a larger weight moves it."""
    gen = train("gen", FAST + [f"out_dir={tmp_path / 'gen'}", f"init_from={mbaq_model}", "stage.steps=1"])
    losses = []
    for w in (1.0, 1.0 + 1e-6, 20.0):
        stage = STAGES["lang"](compose_config("lang", FAST + [f"init_from={gen}", "stage.batch_size=6", "stage.micro_batches=3",
                                                               f"stage.final_line_weight={w}"]))
        model, _ = stage.build(None)
        with torch.no_grad():
            losses.append(float(stage.compute_loss(model, model, stage.batch(0, 0))[0]))
    assert abs(losses[0] - losses[1]) < 1e-4 * losses[0]
    assert abs(losses[2] - losses[0]) > 1e-3 * losses[0]
    with pytest.raises(ValueError, match="final_line_weight"):
        STAGES["lang"](compose_config("lang", FAST + [f"init_from={gen}", "stage.final_line_weight=0"]))
