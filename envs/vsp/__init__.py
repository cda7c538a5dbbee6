"""The Visual Spatial Planning (VSP) maze scenario: maps, formats, renderer, loader, scorers, env."""

from envs.vsp.formats import (
    VSPFormatError,
    parse_desc,
    parse_pure_text,
    parse_table,
    read_map,
    to_desc,
    to_desc_text,
    to_pure_text,
    to_special_text,
    to_table,
)
from envs.vsp.maps import (
    ACTION_LETTERS,
    LEVELS,
    InvalidMapError,
    VSPMap,
    action_from_letter,
    generate_map,
)

__all__ = [
    "ACTION_LETTERS",
    "LEVELS",
    "InvalidMapError",
    "VSPFormatError",
    "VSPMap",
    "action_from_letter",
    "generate_map",
    "parse_desc",
    "parse_pure_text",
    "parse_table",
    "read_map",
    "to_desc",
    "to_desc_text",
    "to_pure_text",
    "to_special_text",
    "to_table",
]
