"""Grids: many experiments (models x problems x settings x seeds) run in parallel and analysed together."""
