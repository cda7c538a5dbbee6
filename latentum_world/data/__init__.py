"""Training data made on the fly from the map generator (never from VSP benchmark items)."""
