"""``LatentWorldModel``: batched imagination with a trained LatentUM.

``reset(images)`` encodes real first frames; ``step(actions)`` appends each action as text after the
current state, lets the MoME generation branch imagine the next state's codes, rolls the cache back
and re-ingests them through the understanding branch, then asks the understanding branch whether
the player is on the goal or in a hole (by default each "Yes" confirmed by its board read-out:
``flags_from``). Reward and termination are those answers, never the simulator's. The context is Markov: the cache holds ``<img> s_t </img>`` per row (the real first frame
as continuous features, imagined states as ``visual_projector(z_q)``), every row the same length, so a
step appends only the action, the state re-ingested for the questions is the next step's context,
and a batch row can be reset on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from envs.vsp.formats import VSPFormatError, parse_table
from envs.vsp.maps import ACTION_LETTERS, VSPMap
from latentum_world.data.prompts import flag_answer, in_hole_question, on_goal_question, table_question
from latentum_world.model.compiled import CompiledImagination, ingest_functions
from latentum_world.model.depth_head import Sampling
from latentum_world.model.generation import generate_state
from latentum_world.model.language import KVCache
from latentum_world.model.draft import draft_greedy_decode
from latentum_world.world.code_guess import MEMO_FILE, TransitionMemo, weights_fingerprint
from latentum_world.world.fused_step import FusedStep
from latentum_world.world.table_drafts import TableDrafts, cells_in_positions


FLAG_SOURCES = ("questions", "readout", "both")  # where reward and termination are read from (LatentWorldModel's flags_from)
DEFAULT_FLAG_SOURCE = "both"
READOUT_TOKENS = 100  # the read-out's decoding budget (a level-8 table is about 90 tokens)


@dataclass
class WorldStep:
    codes: torch.Tensor  # (B, P, K) imagined next-state codes
    reward: torch.Tensor  # (B,) float: 1 where the model says the player is on the goal (see ``flags_from``)
    terminated: torch.Tensor  # (B,) bool: on the goal or in a hole, by the model's answers
    p_goal: torch.Tensor  # (B,) the model's probability of "Yes" to "Is the player on the goal?" (readout: 0 or 1)
    p_hole: torch.Tensor  # (B,) ... "Is the player in a hole?"


class FlagQuestions:
    """The understanding branch's answers that make reward and termination: P(Yes) to "Is the player on the
    goal?" and "Is the player in a hole?" about image slot embeddings. Needs no generation branch, so an
    understanding model's own answers are measured the same way (``benchmarks/flag_answers.py``).

    With ``config.flag_answers == "interpreted"`` the model first writes the player's cell (its ``r,c``
    token and table piece, greedily, as trained) and P(Yes) is read after that; with ``"direct"`` right
    after the question."""

    def __init__(self, model, tokenizer, compiled: CompiledImagination | None = None):
        self.model = model
        self._text, self._image = ingest_functions(compiled)
        self.device = next(model.parameters()).device
        interpreted = model.config.flag_answers == "interpreted"
        probe = VSPMap(3, (0, 0), (1, 1))
        # the verdict's token, as the answer text tokenizes it ("Yes" directly, " Yes" after the cell)
        self.yes, self.no = (tokenizer.encode_text(flag_answer(probe, f, interpreted))[-1] for f in (True, False))
        goal_q, hole_q = (tokenizer.encode_text(q(probe)[0]) for q in (on_goal_question, in_hole_question))
        if len(goal_q) != len(hole_q):
            raise ValueError("the goal and hole questions must tokenize to the same length (they share one batch)")
        # tokens written before the verdict: 0, or the player's "r,c" token and piece
        self.interpretation_tokens = len(tokenizer.encode_text(on_goal_question(probe, interpreted)[1])) - 1
        shared = next(i for i, (a, b) in enumerate(zip(goal_q, hole_q)) if a != b)  # "Is the player" is asked once
        self.question_prefix = torch.tensor(goal_q[:shared], device=self.device)
        self.questions = [torch.tensor(q[shared:], device=self.device) for q in (goal_q, hole_q)]

    @torch.no_grad()
    def __call__(self, state_embeds: torch.Tensor, cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """P(Yes) ``(B,)`` to the goal and to the hole question about slot embeddings ``(B, P, d)`` (``cache``:
        their ``<img> ... </img>`` ingest, if already done; it is not modified)."""
        b = state_embeds.shape[0]
        both, h = self._ask(state_embeds, cache)
        for _ in range(self.interpretation_tokens):  # the player's cell, greedily: (2B, 1) per token
            h = self._text(self.model, both, self.model.lm_head(h).argmax(-1, keepdim=True))[:, -1]
        yn = self.model.lm_head(h)[:, [self.yes, self.no]].softmax(-1)[:, 0]  # (2B,) P(Yes)
        return yn[:b], yn[b:]

    def _ask(self, state_embeds: torch.Tensor, cache: KVCache | None) -> tuple[KVCache, torch.Tensor]:
        """Both questions after each state: the ``2B``-row cache (B goal questions, then B hole questions) and
        the hidden state ``(2B, d)`` after each question's last token. ``cache`` (the states' ingest) is not modified."""
        b = state_embeds.shape[0]
        if cache is None:
            cache = KVCache(self.model.config.num_layers)
            self._image(self.model, cache, state_embeds)
        cache = cache.clone()
        if len(self.question_prefix):
            self._text(self.model, cache, self.question_prefix[None].expand(b, -1))  # the questions' common start, once
        both = cache.select(torch.arange(b, device=self.device).repeat(2))
        q = torch.cat([self.questions[0][None].expand(b, -1), self.questions[1][None].expand(b, -1)])  # same length
        return both, self._text(self.model, both, q)[:, -1]

    @torch.no_grad()
    def answers(self, state_embeds: torch.Tensor, tokenizer) -> list[tuple[str, str]]:
        """The greedy answer texts ``(goal answer, hole answer)`` per state ``(B, P, d)``, interpretation
        included (e.g. ``3,2 ! | Yes``): what the model says, for diagnosing a wrong flag."""
        b = state_embeds.shape[0]
        both, h = self._ask(state_embeds, None)
        out = [self.model.lm_head(h).argmax(-1, keepdim=True)]  # (2B, 1) each: the interpretation, then the verdict
        for _ in range(self.interpretation_tokens):
            h = self._text(self.model, both, out[-1])[:, -1]
            out.append(self.model.lm_head(h).argmax(-1, keepdim=True))
        texts = [tokenizer.decode_text(row) for row in torch.cat(out, 1).tolist()]
        return list(zip(texts[:b], texts[b:]))


class LatentWorldModel:
    """:param model: a LatentUM with its generation branch; :param tokenizer: its tokenizer; :param compile:
    compile the step with ``torch.compile``: greedy steps (the default sampling) always run as the fused pieces of
    :mod:`latentum_world.world.fused_step` (static KV buffers, oneDNN-packed matmuls), which ``compile`` turns
    into three Inductor graphs; sampled steps run the general forwards, compiled piece by piece
    (:mod:`latentum_world.model.compiled`). Faster steps after a compile warm-up in the first steps. The
    fused pieces hold a snapshot of the weights: a model trained further needs a new ``LatentWorldModel``.

    :param flags_from: where reward and termination come from, always the understanding branch reading the
        imagined state. ``"questions"``: its P(Yes) to "Is the player on the goal?" and "Is the player in a
        hole?" (a few tokens per step; the fastest). ``"readout"``: its whole-board read-out as VSP table
        text (about 90 greedily decoded tokens per step, 2-3x slower): the player on the goal (``%``) gives
        reward 1 and ends the episode, the player in a hole (``!``) ends it, and a read-out that is not a
        valid board does neither. ``"both"`` (default): the questions, and each "Yes" stands only where the
        read-out of that state agrees: its player piece is ``%`` (goal) or ``!`` (hole). The read-out is
        decoded only for the rows with a "Yes", and only up to the player's piece. Full read-outs decoded
        in a step (``"readout"``) are kept for :meth:`read_board`.
    :param memo: where the fused step's Jacobi guesses start (speed only: the codes are the same either way):
        ``True`` (default), the memo saved in the model's directory if it has one
        (:data:`~latentum_world.world.code_guess.MEMO_FILE`, made by ``latentum-world memo``); a path, that
        memo file; ``False``, an empty memo. A memo made for other weights is ignored with a warning.
    """

    def __init__(self, model, tokenizer, sampling: Sampling | None = None, compile: bool = False,
                 flags_from: str = DEFAULT_FLAG_SOURCE, memo: bool | str | Path = True):
        if not model.config.generation_branch:
            raise ValueError("this checkpoint has no generation branch (train the gen and world stages)")
        if flags_from not in FLAG_SOURCES:
            raise ValueError(f"flags_from must be one of {FLAG_SOURCES}, got {flags_from!r}")
        self.flags_from = flags_from
        self.model, self.tok = model.eval(), tokenizer
        self.sampling = sampling or Sampling(greedy=True)
        c = model.config
        self.device = next(model.parameters()).device
        self.action_ids = torch.tensor(tokenizer.convert_tokens_to_ids(list(ACTION_LETTERS)), device=self.device)
        # greedy steps run as three fused pieces (:mod:`latentum_world.world.fused_step`; flag questions answered
        # directly), compiled with ``compile``; resets and read-outs, whose shapes vary, stay eager. Otherwise
        # (sampling, or interpreted answers) the general forwards run, compiled piece by piece with ``compile``.
        fused = self.sampling.greedy and c.flag_answers != "interpreted"
        self.compiled = CompiledImagination() if compile and not fused else None
        self.flag_questions = fq = FlagQuestions(model, tokenizer, self.compiled)
        self.fused = FusedStep(model, self.action_ids, fq.question_prefix, fq.questions, (fq.yes, fq.no),
                               compile=compile) if fused else None
        # the fused step finds the next codes by Jacobi rounds, started from guesses out of the model's own earlier
        # steps (speed only: the same greedy codes as position by position, which ``jacobi = False`` runs)
        self.jacobi = True
        grid = math.isqrt(c.latent_positions)
        self.grid = grid if grid * grid == c.latent_positions else None  # latent positions as a square image grid
        self.memo = TransitionMemo(c.latent_positions, c.codebook_size) if fused and self.grid else None  # (else: the current codes)
        if memo is True:  # the model directory's memo, if it was loaded from one that has it
            home = getattr(model, "name_or_path", "")
            memo = Path(home) / MEMO_FILE if home and (Path(home) / MEMO_FILE).is_file() else False
        if memo is not False and self.memo is not None:
            if not Path(memo).is_file():
                raise FileNotFoundError(f"no transition memo at {memo} (make one with `latentum-world memo`)")
            self.memo.load(memo, weights_fingerprint(model))
        self._text, self._image = ingest_functions(self.compiled)
        self.table_prompt = torch.tensor(tokenizer.encode_text(table_question(VSPMap(3, (0, 0), (1, 1)))[0]), device=self.device)
        # the read-out's player pieces (" @ |", " % |", " ! |": one token each) -> their symbol
        self.player_piece_ids = {tokenizer.convert_tokens_to_ids(f" {sym} |"): sym for sym in "@%!"}
        self.positions, self.num_codebooks = c.latent_positions, c.num_codebooks
        self.state_embeds: torch.Tensor | None = None  # (B, P, d): what the current state's image slots hold
        self.codes: torch.Tensor | None = None  # (B, P, K)
        self._boards: list = []  # per row: the current state's read-out once decoded (False: not decoded yet)
        self._draft_boards: list = []  # per row: the board that drafts its read-outs, or None (see reset)
        self._table_drafts = TableDrafts(tokenizer)  # the read-outs' drafts, cut before the piece looked for

    # ------------------------------------------------------------------ states
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Real frames ``(B, S, S, 3)`` uint8 -> (continuous slot embeddings ``(B, P, d)``, MBAQ codes ``(B, P, K)``)."""
        fast = None if self.fused is None else self.fused.encode(images.to(self.device))  # packed matmuls
        if fast is not None:
            return fast
        vit = self.model.get_vit_feature(images.to(self.device))
        return self.model.mlp1(vit), self.model.quantizer.encode(vit)

    @torch.no_grad()
    def reset(self, images: torch.Tensor, rows: torch.Tensor | None = None,
              draft_boards: Sequence[VSPMap | None] | None = None) -> torch.Tensor:
        """Start (all rows, or the rows in ``rows``) from real frames; returns their codes ``(n, P, K)``.

        :param draft_boards: optional, one per row started: a board (e.g. the map the frame was rendered
            from) whose table, drawn without the player, drafts this episode's read-outs
            (:mod:`latentum_world.model.draft`). Speed only: every read-out, and so every reward and
            termination, is the model's own greedy text whatever the draft; a board unlike the imagined
            one only costs forwards."""
        embeds, codes = self.encode(images)
        self._set_state(embeds, codes, rows, new_episode=True, draft_boards=draft_boards)
        return codes

    @torch.no_grad()
    def set_codes(self, codes: torch.Tensor, rows: torch.Tensor | None = None,
                  draft_boards: Sequence[VSPMap | None] | None = None) -> None:
        """Start from latent states (e.g. a saved imagination); ``draft_boards`` as in :meth:`reset`."""
        codes = codes.to(self.device)
        self._set_state(self.model.project_latents(codes), codes, rows, new_episode=True, draft_boards=draft_boards)

    def _set_state(self, embeds: torch.Tensor, codes: torch.Tensor, rows: torch.Tensor | None,
                   cache: KVCache | None = None, new_episode: bool = False,
                   draft_boards: Sequence[VSPMap | None] | None = None) -> None:
        """New states for all rows or ``rows``. ``new_episode``: their read-out drafts become ``draft_boards``
        (one per new state; ``None``: no draft); otherwise (a step) each row keeps its episode's draft."""
        n = len(codes)
        if draft_boards is not None and (not new_episode or len(draft_boards) != n):
            raise ValueError(f"draft_boards must hold one board (or None) per started row: {n}, got {len(draft_boards)}"
                             if new_episode else "draft_boards are set by reset() / set_codes() only")
        if cache is None:
            cache = self._context(embeds)
        if rows is None:
            self.state_embeds, self.codes, self.cache = embeds, codes, cache
            self._boards = [False] * n
            if new_episode or len(self._draft_boards) != n:
                self._draft_boards = list(draft_boards) if draft_boards is not None else [None] * n
        else:
            rows = torch.as_tensor(rows, device=self.device)
            self.state_embeds = self.state_embeds.index_copy(0, rows, embeds)
            self.codes = self.codes.index_copy(0, rows, codes)
            self.cache.assign(rows, cache)
            for j, r in enumerate(rows.tolist()):
                self._boards[r] = False
                if new_episode:
                    self._draft_boards[r] = None if draft_boards is None else draft_boards[j]

    def _context(self, embeds: torch.Tensor) -> KVCache:
        """The cache of ``<img> embeds </img>`` (slot contents ``(n, P, d)``) through the understanding branch."""
        if self.fused is not None:
            return self.fused.ingest(embeds)
        cache = KVCache(self.model.config.num_layers)
        self._image(self.model, cache, embeds)
        return cache

    # ------------------------------------------------------------------ dynamics
    @torch.no_grad()
    def step(self, actions: torch.Tensor, rows: torch.Tensor | None = None) -> WorldStep:
        """Imagine one transition for every row (or only ``rows``); ``actions`` ints in 0..3, one per stepped row."""
        if self.codes is None:
            raise RuntimeError("call reset() first")
        actions = torch.as_tensor(actions, device=self.device).long()
        b = self.codes.shape[0] if rows is None else len(rows)
        if actions.shape != (b,) or bool(((actions < 0) | (actions > 3)).any()):
            raise ValueError(f"actions must be {b} ints in 0..3, got {actions.tolist()}")
        sampling = self.sampling
        if rows is not None:
            rows = torch.as_tensor(rows, device=self.device)
            if isinstance(sampling.generator, (list, tuple)):
                sampling = Sampling(sampling.temperature, sampling.top_k, sampling.top_p, sampling.greedy,
                                    [sampling.generator[int(i)] for i in rows])
        if rows is not None:
            cache = self.cache.select(rows)  # <img> s_t </img> of the stepped rows (a copy)
        else:  # the fused step only reads it; the general forwards extend it in place
            cache = self.cache if self.fused is not None else self.cache.clone()
        flags = None
        current = self.codes if rows is None else self.codes.index_select(0, rows)  # (b, P, K)
        if self.fused is not None:  # the same computation as below, fused (and compiled with compile=True)
            if self.jacobi:
                guess = current if self.memo is None else self.memo.guess(current, actions)
                remembered = (guess != current).any(-1)  # (b, P): the memo's changes, kept while rounds fix the rest
                codes, embeds = self.fused.imagine(cache, actions, guess, remembered)
                if self.memo is not None:
                    self.memo.learn(current, actions, codes, guess)
            else:
                codes, embeds = self.fused.imagine(cache, actions)
            fresh, *flags = self.fused.understand(embeds)
        else:
            self._text(self.model, cache, self.action_ids[actions][:, None])  # ... a_t
            codes = generate_state(self.model, cache, sampling, reingest=False, compiled=self.compiled)  # the generation branch imagines s_t+1
            embeds = self.model.project_latents(codes)
            fresh = KVCache(self.model.config.num_layers)
            self._image(self.model, fresh, embeds)  # s_t+1 re-ingested by the understanding branch: the next context
        boards = None
        stepped = list(range(len(codes))) if rows is None else rows.tolist()  # the stepped rows' indices
        if self.flags_from == "readout":  # the model's own table read-out: "%" on the goal, "!" in a hole
            boards = self._decode_boards(embeds, READOUT_TOKENS, [self._draft_boards[i] for i in stepped])
            p_goal = torch.tensor([float(b is not None and b.on_goal) for b in boards], device=self.device)
            p_hole = torch.tensor([float(b is not None and b.in_hole) for b in boards], device=self.device)
        else:
            p_goal, p_hole = flags or self.answer_flags(embeds, fresh)
        goal, hole = p_goal > 0.5, p_hole > 0.5
        if self.flags_from == "both":  # every Yes must be confirmed by the read-out's player piece (those rows only)
            asked = torch.nonzero(goal | hole).flatten()
            pieces = [None] * len(codes)
            drafts = [self._draft_boards[stepped[i]] for i in asked.tolist()]
            expected = ["%" * bool(goal[i]) + "!" * bool(hole[i]) for i in asked.tolist()]  # the pieces a Yes implies
            regions = self._moved_regions(drafts, (codes[asked] != current[asked]).any(-1))
            pieces_asked = self._player_pieces(embeds[asked], drafts, fresh.select(asked), expected, regions)  # (none asked: none decoded)
            for i, piece in zip(asked.tolist(), pieces_asked):
                pieces[i] = piece
            goal = goal & torch.tensor([p == "%" for p in pieces], device=self.device)
            hole = hole & torch.tensor([p == "!" for p in pieces], device=self.device)
        self._set_state(embeds, codes, rows, fresh)
        if boards is not None:  # kept: the env's info["board"] is the same read-out
            for r, b in zip(stepped, boards):
                self._boards[r] = b
        return WorldStep(codes, goal.float(), goal | hole, p_goal, p_hole)

    @torch.no_grad()
    def answer_flags(self, state_embeds: torch.Tensor, cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The understanding branch's P(Yes) to the goal and hole questions about states ``(B, P, d)``
        re-ingested as ``<img> visual_projector(z_q) </img>`` (``cache``: that ingest, if already done)."""
        return self.flag_questions(state_embeds, cache)

    @torch.no_grad()
    def read_board(self, state_embeds: torch.Tensor | None = None, max_new_tokens: int = READOUT_TOKENS,
                   draft_boards: Sequence[VSPMap | None] | None = None) -> list[VSPMap | None]:
        """The model's VSP-table read-out of each state (``None`` where the text is not a valid board): of
        ``state_embeds`` ``(B, P, d)`` (``draft_boards``: one draft board or ``None`` per state, see
        :meth:`reset`), or of the current states (each row drafted by its episode's board; decoded once per
        state and kept, with the default ``max_new_tokens``)."""
        if state_embeds is None and self.codes is None:
            raise RuntimeError("call reset() first")
        if state_embeds is not None or max_new_tokens != READOUT_TOKENS:
            if state_embeds is None:
                state_embeds, draft_boards = self.state_embeds, self._draft_boards
            return self._decode_boards(state_embeds, max_new_tokens, draft_boards)
        missing = [i for i, b in enumerate(self._boards) if b is False]
        if missing:
            rows = torch.tensor(missing, device=self.device)
            drafts = [self._draft_boards[i] for i in missing]
            for i, b in zip(missing, self._decode_boards(self.state_embeds[rows], max_new_tokens, drafts)):
                self._boards[i] = b
        return list(self._boards)

    def _moved_regions(self, boards: Sequence[VSPMap | None], changed: torch.Tensor) -> list[frozenset | None]:
        """Per row, the cells of its board (``None``: no board) whose image regions overlap the latent positions
        that ``changed`` ``(n, P)`` in this step: where the player now stands, if it moved or turned (else ``None``)."""
        c = self.model.config
        return [None if board is None or self.grid is None or not moved.any() else
                cells_in_positions(board.size, tuple(torch.nonzero(moved).flatten().tolist()), c.image_size, c.cell_pixels,
                                   self.grid)
                for board, moved in zip(boards, changed)]

    @torch.no_grad()
    def _player_pieces(self, embeds: torch.Tensor, draft_boards: Sequence[VSPMap | None] | None = None,
                       cache: KVCache | None = None, expected: Sequence[str] | None = None,
                       regions: Sequence[frozenset | None] | None = None) -> list[str | None]:
        """The player's symbol (``@``, ``%`` or ``!``) in the model's table read-out of each state ``(n, P, d)``,
        decoding greedily only until each row has written it (``None``: the read-out ended, or ran out of
        budget, without one). The same text as :meth:`read_board`'s up to that token. ``draft_boards``
        (one board or ``None`` per row): their player-less tables are checked as drafts, several tokens per
        forward (:func:`~latentum_world.model.draft.draft_greedy_decode`; with the fused step, its first forward
        is :meth:`~latentum_world.world.fused_step.FusedStep.extend`). ``expected`` (per row, the
        pieces looked for, e.g. ``"%"``): each draft then ends before the last cell where such a piece could
        stand on its board, or in its ``regions`` cells (e.g. where the step changed the image) where one could
        stand there (speed only: a piece written later is still decoded, token by token)."""
        eos = self.model.config.eos_token_id
        texts = self._read_out(embeds, draft_boards, lambda t: t in self.player_piece_ids or t == eos, READOUT_TOKENS, cache,
                               expected, regions)
        return [self.player_piece_ids.get(t[-1]) for t in texts]

    def _read_out(self, embeds: torch.Tensor, draft_boards: Sequence[VSPMap | None] | None, stop,
                  max_new_tokens: int, cache: KVCache | None = None, expected: Sequence[str] | None = None,
                  regions: Sequence[frozenset | None] | None = None) -> list[list[int]]:
        """The table read-out's tokens for states ``(n, P, d)`` (``<img> s </img>`` + the table question, then
        greedy decoding, drafted by ``draft_boards``), each row up to its first ``stop`` token (included).
        ``cache``: the states' ``<img> s </img>`` ingest if already made (it is not modified)."""
        n = embeds.shape[0]
        if draft_boards is not None and len(draft_boards) != n:
            raise ValueError(f"draft_boards must hold one board (or None) per state: {n}, got {len(draft_boards)}")
        if n == 0:
            return []
        cache = self._context(embeds) if cache is None else cache.clone()
        expected, regions = expected or [""] * n, regions or [None] * n
        drafts = [None if m is None else self._table_drafts(m, e, r)  # the board without the player, cut
                  for m, e, r in zip(draft_boards or [None] * n, expected, regions)]
        return draft_greedy_decode(self.model, cache, None, drafts, stop, max_new_tokens,  # the table question
                                   step_fn=lambda c, ids: self._text(self.model, c, ids), prompt=self.table_prompt,  # and drafts
                                   forward_fn=None if self.fused is None else self.fused.extend)

    @torch.no_grad()
    def _decode_boards(self, embeds: torch.Tensor, max_new_tokens: int,
                       draft_boards: Sequence[VSPMap | None] | None = None) -> list[VSPMap | None]:
        """Greedy table read-outs of states ``(n, P, d)``, each checked against its draft board's table."""
        eos = self.model.config.eos_token_id
        texts = self._read_out(embeds, draft_boards, lambda t: t == eos, max_new_tokens)
        boards: list[VSPMap | None] = []
        for seq in texts:
            try:
                boards.append(parse_table(self.tok.decode_text(seq[:-1] if seq and seq[-1] == eos else seq)))
            except (VSPFormatError, ValueError):
                boards.append(None)
        return boards
