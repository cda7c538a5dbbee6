"""Greedy decoding that checks a guessed continuation (a *draft*) in one forward instead of token by token.

The world model's termination check reads its own VSP-table read-out of an imagined state up to the
player's piece: about 50 greedily decoded tokens, one sequential forward each. Most of that text is
predictable: the imagined board is nearly always the episode's start board with the player moved. With
the start board's table, drawn without the player, as a draft, one forward over the whole draft gives the
model's prediction after every draft token; the prefix where the predictions equal the draft is accepted,
and the model's own token where they first differ is emitted. That is usually the player's cell (the
draft shows ice, the goal or a hole there; the model writes ``@``, ``%`` or ``!``), so a read-out up to the
player's piece typically costs one forward instead of 50.

The draft only decides how many tokens are checked per forward, never which tokens are emitted: every
emitted token is the model's own greedy choice given the tokens before it, exactly as in token-by-token
decoding (the speculative-decoding rule with greedy acceptance). A wrong or missing draft only costs
speed. Checking several tokens in one forward changes the order of floating-point sums, so a near-tie
between two tokens could in principle resolve differently; ``tests/test_draft_decoding.py`` checks the
emitted text against plain greedy decoding.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from latentum_world.model.language import KVCache


@torch.no_grad()
def draft_greedy_decode(
    model,
    cache: KVCache,
    h: torch.Tensor,
    drafts: Sequence[Sequence[int] | None],
    stop: Callable[[int], bool],
    max_new_tokens: int,
    step_fn: Callable[[KVCache, torch.Tensor], torch.Tensor] | None = None,
    prompt: torch.Tensor | None = None,
    forward_fn: Callable[[KVCache, torch.Tensor, torch.Tensor], torch.Tensor | None] | None = None,
) -> list[list[int]]:
    """Greedy continuations of ``n`` rows, each checked against its draft.

    :param cache: the rows' KV cache up to the prompt's end (extended in place; positions whose draft tokens
        were rejected stay in it, marked invalid in ``key_valid``), or, with ``prompt``, up to its start.
    :param h: ``(n, d)`` final hidden state after each row's last prompt token; ``None`` with ``prompt``.
    :param prompt: ``(p,)`` token ids every row's prompt ends with, not yet in ``cache``: fed together with
        the drafts in the first forward (one forward fewer; the same tokens).
    :param forward_fn: ``(cache, ids (n, w), valid (n, w)) -> hidden (n, w, d)`` or ``None``, tried first for
        the other forwards (e.g. :meth:`~latentum_world.world.fused_step.FusedStep.extend`); ``None``: the
        language model itself.
    :param drafts: per row, the guessed token ids of the continuation (``None`` or empty: plain greedy).
        Draft token ``j`` is the guess for emitted token ``j``; after a mismatch at ``j`` the draft goes on
        from ``j + 1`` (the VSP table has one token per cell, so a different piece does not shift the rest).
    :param stop: a row ends at the first emitted token with ``stop(token)`` true (included in its output).
    :param max_new_tokens: a row also ends after this many emitted tokens.
    :param step_fn: ``(cache, ids (n, 1)) -> hidden (n, 1, d)`` for steps where every row feeds exactly one
        real token (e.g. a compiled ``ingest_text``); default the language model itself.
    :returns: per row, the emitted token ids.
    """
    if (h is None) == (prompt is None):
        raise ValueError("pass either h (the prompt already in the cache) or prompt (not yet in it)")
    n = len(drafts)
    device = next(model.parameters()).device
    out: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    if prompt is None:  # the first token of every row, from the prompt's last hidden state
        pending = model.lm_head(h).argmax(-1).tolist()  # (n,) emitted, not yet fed back
        for i in range(n):
            _emit(out, done, i, pending[i], stop, max_new_tokens)
        known = [[p] for p in pending]  # per row, the tokens of this forward that are certain (then the guesses)
    else:
        known = [prompt.tolist()] * n
    while not all(done):
        rows_input = []
        for i in range(n):
            if done[i]:
                rows_input.append([])
                continue
            rest = list(drafts[i][len(out[i]):]) if drafts[i] else []
            rows_input.append(known[i] + rest[: max(0, max_new_tokens - len(out[i]))])
        width = max(len(r) for r in rows_input)
        ids = torch.zeros(n, width, dtype=torch.long, device=device)
        valid = torch.zeros(n, width, dtype=torch.bool, device=device)
        for i, r in enumerate(rows_input):
            if r:
                ids[i, : len(r)] = torch.tensor(r, device=device)
                valid[i, : len(r)] = True
        if width == 1 and step_fn is not None and bool(valid.all()):
            hidden = step_fn(cache, ids)  # (n, 1, d)
        else:
            hidden = None if forward_fn is None else forward_fn(cache, ids, valid)
            if hidden is None:
                hidden = model.language_model(model.language_model.embed_tokens(ids), valid.long(), cache=cache)  # (n, width, d)
        preds = model.lm_head(hidden).argmax(-1).tolist()  # (n, width): the token after each input token
        keep = valid.clone()  # which of this forward's positions stay visible: the fed tokens and accepted draft tokens
        for i, r in enumerate(rows_input):
            if not r:
                continue
            k = len(known[i])
            accepted = 0  # draft tokens r[k:] that equal the model's prediction before them
            while k + accepted < len(r) and preds[i][k - 1 + accepted] == r[k + accepted]:
                accepted += 1
            keep[i, k + accepted:] = False
            for t in r[k : k + accepted]:
                if _emit(out, done, i, t, stop, max_new_tokens):
                    break
            if not done[i]:
                nxt = preds[i][k - 1 + accepted]  # the model's own token after the accepted prefix
                known[i] = [nxt]
                _emit(out, done, i, nxt, stop, max_new_tokens)
        cache.key_valid = torch.cat([cache.key_valid[:, :-width], keep], dim=1)  # (n, S): rejected guesses masked out
    return out


def _emit(out: list[list[int]], done: list[bool], i: int, token: int, stop, max_new_tokens: int) -> bool:
    """Append ``token`` to row ``i``; mark the row done on a stop token or a full budget. Returns ``done[i]``."""
    out[i].append(token)
    if stop(token) or len(out[i]) >= max_new_tokens:
        done[i] = True
    return done[i]
