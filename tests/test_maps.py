import itertools

import numpy as np
import pytest

from envs.vsp.formats import (
    VSPFormatError,
    parse_desc,
    parse_pure_text,
    parse_table,
    to_desc,
    to_pure_text,
    to_table,
)
from envs.vsp.maps import LEVELS, InvalidMapError, VSPMap, action_from_letter, generate_map


def random_maps(seed=0, per_level=30, hole_prob=0.2):
    rng = np.random.default_rng(seed)
    return [generate_map(rng, lv, hole_prob) for lv in LEVELS for _ in range(per_level)]


def test_generator_is_solvable_and_seeded():
    maps = random_maps(0)
    assert all(m.solvable and m.player != m.goal and not m.terminal for m in maps)
    assert maps == random_maps(0)
    assert maps != random_maps(1)
    for lv in LEVELS:
        assert {m.size for m in maps[(lv - 3) * 30 : (lv - 2) * 30]} == {lv}


def test_hole_prob_changes_hole_count():
    few = np.mean([len(m.holes) for m in random_maps(2, 40, 0.2)])
    many = np.mean([len(m.holes) for m in random_maps(2, 40, 0.5)])
    assert many > 1.8 * few


def test_generator_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="level"):
        generate_map(rng, 9)
    with pytest.raises(ValueError, match="hole_prob"):
        generate_map(rng, 4, 1.0)


def test_shortest_path_is_optimal_and_safe():
    for m in random_maps(3, 10):
        path = m.shortest_path()
        dist = m.distances_to_goal()
        assert len(path) == dist[m.player]
        state = m
        for a in path:
            state = state.move(a)
            assert not state.in_hole
        assert state.on_goal
        # brute force over all action strings one shorter finds nothing (levels 3-4 only, to stay fast)
        if m.size <= 4 and len(path) > 1:
            for seq in itertools.product(range(4), repeat=len(path) - 1):
                s = m
                for a in seq:
                    s = s.move(a)
                    if s.terminal:
                        break
                assert not s.on_goal


def test_unreachable_goal():
    m = VSPMap(3, (0, 0), (2, 2), frozenset({(0, 1), (1, 0), (1, 1)}))
    assert m.shortest_path() is None and not m.solvable and not m.is_detour


def test_detour_definition():
    straight = VSPMap(3, (0, 0), (0, 2))
    detour = VSPMap(3, (0, 0), (0, 2), frozenset({(0, 1)}))
    assert not straight.is_detour and detour.is_detour
    assert len(detour.shortest_path()) == 4 and detour.manhattan == 2


def test_move_dynamics_off_edge_and_terminal_flags():
    m = VSPMap(3, (0, 0), (0, 1), frozenset({(1, 0)}))
    assert m.move(0) == m and m.move(3) == m  # off the edge: no move
    assert m.move(2).on_goal and m.move(1).in_hole
    with pytest.raises(ValueError, match="unknown action"):
        m.move(4)
    assert action_from_letter("R") == 2
    with pytest.raises(ValueError, match="unknown action"):
        action_from_letter("X")


def test_invalid_maps_raise():
    with pytest.raises(InvalidMapError, match="off the"):
        VSPMap(3, (0, 3), (0, 0))
    with pytest.raises(InvalidMapError, match="goal .* hole"):
        VSPMap(3, (0, 0), (1, 1), frozenset({(1, 1)}))
    with pytest.raises(InvalidMapError, match="size"):
        VSPMap(9, (0, 0), (1, 1))


@pytest.mark.parametrize("fmt", ["table", "pure_text", "desc"])
def test_format_round_trips(fmt):
    to, parse = {"table": (to_table, parse_table), "pure_text": (to_pure_text, parse_pure_text), "desc": (to_desc, parse_desc)}[fmt]
    for m in random_maps(4, 20) + random_maps(5, 5, 0.5):
        assert parse(to(m)) == m


def test_table_holds_rollout_states_and_grid_round_trip():
    m = VSPMap(4, (0, 0), (3, 3), frozenset({(1, 1)}))
    for state in (m, m.with_player((3, 3)), m.with_player((1, 1))):
        assert parse_table(to_table(state)) == state
        assert VSPMap.from_grid(state.to_grid()) == state
    assert "%" in to_table(m.with_player((3, 3))) and "!" in to_table(m.with_player((1, 1)))
    with pytest.raises(ValueError):
        to_desc(m.with_player((1, 1)))


def test_exact_benchmark_text():
    m = VSPMap(3, (0, 0), (1, 1), frozenset({(2, 1), (2, 2)}))
    assert to_table(m) == "| | Col 1 | Col 2 | Col 3 |\n| Row 1 | @ | _ | _ |\n| Row 2 | _ | * | _ |\n| Row 3 | _ | # | # |\n"
    assert to_pure_text(m) == (
        "This is a 3x3 map.\nThe player is at: row 1, column 1;\n"
        "The hole(s) are at: Row 3, Column 2; Row 3, Column 3;\nThe goal is at: Row 2, Column 2."
    )
    assert "There is no holes in this map;" in to_pure_text(VSPMap(3, (2, 0), (1, 2)))
    assert to_desc(m) == ["SFF", "FGF", "FHH"]


@pytest.mark.parametrize(
    "text, line, match",
    [
        ("| | Col 1 | Col 2 |\n| Row 1 | @ | _ |\n| Row 2 | _ | ? |\n", 3, "unknown cell symbol"),
        ("| | Col 1 | Col 2 |\n| Row 1 | @ | _ |\n| Row 3 | _ | * |\n", 3, "expected Row 2"),
        ("| | Col 1 | Col 2 |\n| Row 1 | @ | _ |\n", 1, "needs 2 rows"),
        ("| | Col 1 | Col 2 |\n| Row 1 | @ | _ | _ |\n| Row 2 | _ | * |\n", 2, "3 cells"),
        ("| | Col 1 | Col 2 |\n| Row 1 | @ | @ |\n| Row 2 | _ | * |\n", 2, "second player"),
        ("Col 1\n", 1, "header"),
    ],
)
def test_table_errors_name_file_and_line(text, line, match):
    with pytest.raises(VSPFormatError, match=match) as e:
        parse_table(text, source="maps/level2/table/7.txt")
    assert f"maps/level2/table/7.txt, line {line}" in str(e.value)


def test_pure_text_and_desc_errors():
    good = to_pure_text(VSPMap(3, (0, 0), (1, 1)))
    with pytest.raises(VSPFormatError, match="line 2"):
        parse_pure_text(good.replace("row 1, column 1;", "row one;"), source="p.txt")
    with pytest.raises(VSPFormatError, match="off the"):
        parse_pure_text(good.replace("row 1, column 1", "row 5, column 1"))
    with pytest.raises(VSPFormatError, match="line 2.*square"):
        parse_desc("SFF\nFG\nFFF", source="t.txt")
    with pytest.raises(VSPFormatError, match="unknown desc cell"):
        parse_desc(["SFX", "FGF", "FFF"])
    with pytest.raises(VSPFormatError, match="no G"):
        parse_desc(["SFF", "FFF", "FFF"])


def _enters_terminal(ep) -> bool:
    return any(ep.frames[t][0].terminal and not ep.frames[t - 1][0].terminal for t in range(1, len(ep.frames)))


def test_transition_windows_are_consecutive_real_moves_and_terminal_focus_holds_the_last_move():
    from latentum_world.data.rollouts import transition_window

    rng = np.random.default_rng(3)
    uniform = [transition_window(rng, 2) for _ in range(400)]
    focused = [transition_window(rng, 2, terminal_focus=1.0) for _ in range(400)]
    for ep in uniform + focused:
        assert len(ep) == 2 and len(ep.frames) == 3
        for (m, _), (nxt, last), a in zip(ep.frames, ep.frames[1:], ep.actions):
            assert last == a and nxt == (m if m.terminal else m.move(a))  # real dynamics, terminal states stay put
    share_uniform = np.mean([_enters_terminal(ep) for ep in uniform])
    share_focused = np.mean([_enters_terminal(ep) for ep in focused])
    assert 0.25 < share_uniform < 0.6  # measured 0.42 over 4,000 windows
    assert share_focused > share_uniform + 0.2  # every episode that ends within 16 steps is caught at its end
    with pytest.raises(ValueError, match="terminal_focus"):
        transition_window(rng, 2, terminal_focus=1.5)
