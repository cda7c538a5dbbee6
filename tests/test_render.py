"""envs.vsp.render: bit-exact against gymnasium's own pygame render and against the benchmark's PNGs."""

from __future__ import annotations

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"  # before any pygame import: no window
os.environ["SDL_AUDIODRIVER"] = "dummy"  # gym calls pygame.init(); keep it quiet on machines without audio

from pathlib import Path

import numpy as np
import pytest

from envs.vsp.formats import parse_table, to_desc
from envs.vsp.maps import LEVELS, VSPMap, generate_map
from envs.vsp.render import MazeRenderer, load_png, render_map

FIXTURES = Path(__file__).parent / "fixtures" / "vsp" / "maze"
FIXTURE_IMAGES = sorted(p for p in FIXTURES.glob("*/example/*/img/*.png") if (p.parent.parent / "table" / f"{p.stem}.txt").is_file())


def _gym_env(m: VSPMap, cell_size: int | None = None):
    """A non-slippery gym FrozenLake on ``m``'s board, reset, ready to render like the VSP images.

    gym draws a stool (stool.png) on the 'S' start cell; the VSP images have none. gym loads each sprite
    lazily on the first render only if its attribute is still None, so setting ``start_img`` to a fully
    transparent surface beforehand makes the stool blit a no-op (alpha 0 leaves the pixels unchanged).
    ``cell_size`` (default: gym's own 64 px) is overridden the same way, before the sprites are scaled.
    """
    pygame = pytest.importorskip("pygame")
    gym = pytest.importorskip("gymnasium")
    env = gym.make("FrozenLake-v1", desc=to_desc(m), is_slippery=False, render_mode="rgb_array")
    u = env.unwrapped
    if cell_size is not None:
        u.cell_size = (cell_size, cell_size)
        u.window_size = (cell_size * m.size, cell_size * m.size)
    env.reset(seed=0)
    u.start_img = pygame.Surface(u.cell_size, pygame.SRCALPHA)  # fully transparent: no stool
    return env


def _assert_same(gym_frame: np.ndarray, ours: np.ndarray) -> None:
    assert gym_frame.shape == ours.shape and gym_frame.dtype == ours.dtype == np.uint8
    diff = np.argwhere((gym_frame != ours).any(-1))
    assert len(diff) == 0, f"{len(diff)} pixels differ, first at (y, x) = {tuple(diff[0])}"


# ---------------------------------------------------------------------------- vs gymnasium's pygame render
@pytest.mark.parametrize("level", LEVELS)
def test_bit_exact_vs_gym_random_walks(level: int) -> None:
    """Random walks (half random moves, half shortest-path moves) until every facing, a hole and the goal were seen."""
    rng = np.random.default_rng(1000 + level)
    seen_actions: set[int] = set()
    holes = goals = 0
    for map_seed in range(8):
        start = generate_map(np.random.default_rng([level, map_seed]), level)
        env = _gym_env(start)
        n = start.size
        m, last = start, None
        _assert_same(env.render(), render_map(m, 64, last))
        for _ in range(30):
            path = m.shortest_path()
            a = int(path[0]) if path and rng.random() < 0.5 else int(rng.integers(4))
            _, _, terminated, truncated, _ = env.step(a)
            m, last = m.move(a), a
            seen_actions.add(a)
            assert env.unwrapped.s == m.player[0] * n + m.player[1]
            _assert_same(env.render(), render_map(m, 64, last))
            if terminated or truncated:
                holes += m.in_hole
                goals += m.on_goal
                env.reset()
                m, last = start, None
                _assert_same(env.render(), render_map(m, 64, last))
        env.close()
        if seen_actions == {0, 1, 2, 3} and holes and goals:
            return
    pytest.fail(f"walks did not cover every case: actions {seen_actions}, holes {holes}, goals {goals}")


@pytest.mark.parametrize("cell_size", [5, 16, 33, 100])
def test_bit_exact_vs_gym_other_cell_sizes(cell_size: int) -> None:
    """gym's own drawing code with its cell size overridden: every facing, on ice, on the goal and in a hole."""
    m = generate_map(np.random.default_rng(7), 5, hole_prob=0.3)
    assert m.holes
    env = _gym_env(m, cell_size)
    u, n = env.unwrapped, m.size
    for cell in (m.player, m.goal, min(m.holes)):
        u.s = cell[0] * n + cell[1]
        for a in (None, 0, 1, 2, 3):
            u.lastaction = a
            _assert_same(env.render(), render_map(m.with_player(cell), cell_size, a))
    env.close()


# ---------------------------------------------------------------------------- vs the benchmark's images
def test_fixture_images_found() -> None:
    assert len(FIXTURE_IMAGES) >= 20


@pytest.mark.parametrize("img_path", FIXTURE_IMAGES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_matches_benchmark_png(img_path: Path) -> None:
    table = img_path.parent.parent / "table" / f"{img_path.stem}.txt"
    m = parse_table(table.read_text(), str(table))
    ref, ours = load_png(img_path), render_map(m, 64)
    assert ref.shape == ours.shape == (64 * m.size, 64 * m.size, 3)
    mad = np.abs(ref.astype(np.int16) - ours).mean(axis=(0, 1))  # per channel, 0-255 scale
    assert (mad <= 0.01).all(), f"mean abs diff per channel {mad}"


# ---------------------------------------------------------------------------- unit tests
@pytest.fixture(scope="module")
def board() -> VSPMap:
    # player (0, 0) on ice, goal (2, 3), holes (1, 1) and (3, 0)
    return VSPMap(4, (0, 0), (2, 3), frozenset({(1, 1), (3, 0)}))


def _changed_cells(a: np.ndarray, b: np.ndarray, cs: int) -> set[tuple[int, int]]:
    n = a.shape[0] // cs
    differs = (a != b).any(-1).reshape(n, cs, n, cs).any(axis=(1, 3))
    return {(int(r), int(c)) for r, c in np.argwhere(differs)}


def test_background_has_no_player(board: VSPMap) -> None:
    r = MazeRenderer(64)
    bg, full = r.background(board), r.render(board)
    assert bg.shape == full.shape == (256, 256, 3) and bg.dtype == np.uint8
    assert _changed_cells(bg, full, 64) == {board.player}
    assert np.array_equal(full[:64, :64], r.player_tile(board))
    moved = board.with_player((0, 2))
    assert np.array_equal(r.background(moved), bg)  # the background ignores the player


def test_last_action_changes_only_player_cell(board: VSPMap) -> None:
    frames = [render_map(board, 64, a) for a in (None, 0, 1, 2, 3)]
    assert np.array_equal(frames[0], frames[2])  # no action = facing down, as after reset
    for i in range(1, 5):
        for j in range(i + 1, 5):
            assert _changed_cells(frames[i], frames[j], 64) == {board.player}


def test_player_in_hole_shows_cracked_hole(board: VSPMap) -> None:
    r = MazeRenderer(64)
    fallen = board.with_player((1, 1))
    tile = r.player_tile(fallen)
    assert not np.array_equal(tile, r.background(board)[64:128, 64:128])  # not the plain hole
    assert all(np.array_equal(tile, r.player_tile(fallen, a)) for a in range(4))  # no elf, no facing
    assert np.array_equal(r.render(fallen)[64:128, 64:128], tile)
    on_goal = board.with_player(board.goal)
    assert not np.array_equal(r.player_tile(on_goal), r.player_tile(board))  # elf over the goal sprite


@pytest.mark.parametrize("cell_size", [16, 100])
def test_other_cell_sizes_shapes(board: VSPMap, cell_size: int) -> None:
    r = MazeRenderer(cell_size)
    n = board.size * cell_size
    assert r.render(board).shape == r.background(board).shape == (n, n, 3)
    assert r.player_tile(board, 2).shape == (cell_size, cell_size, 3)
    assert render_map(board, cell_size).shape == (n, n, 3)
    assert tuple(r.render(board)[0, cell_size + 2]) == (180, 200, 230)  # the top border of cell (0, 1)


@pytest.mark.parametrize("bad", [3, 0, -64, 64.0, "64", True, None])
def test_bad_cell_size(board: VSPMap, bad) -> None:
    with pytest.raises(ValueError, match="cell_size"):
        MazeRenderer(bad)
    with pytest.raises(ValueError, match="cell_size"):
        render_map(board, bad)


@pytest.mark.parametrize("bad", [-1, 4, 1.0, "L", True])
def test_bad_last_action(board: VSPMap, bad) -> None:
    with pytest.raises(ValueError, match="last_action"):
        render_map(board, 64, bad)
    with pytest.raises(ValueError, match="last_action"):
        MazeRenderer(16).player_tile(board, bad)


def test_outputs_are_fresh_arrays(board: VSPMap) -> None:
    r = MazeRenderer(16)
    tile = r.player_tile(board)
    tile[:] = 0  # callers may write into what they get without corrupting the cache
    assert r.player_tile(board).any()
    assert r.render(board).flags.writeable and r.background(board).flags.writeable


def test_missing_sprites_give_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import envs.vsp.render as render

    render._sprites.cache_clear()
    monkeypatch.setattr(render, "sprite_dir", lambda: tmp_path)
    try:
        with pytest.raises(FileNotFoundError, match=r"gymnasium>=1.0,<1.4"):
            MazeRenderer(17)
    finally:
        render._sprites.cache_clear()
