"""MAC (Hudson & Manning, ICLR 2018) and its simplified variant S-MAC (Marois et al., ViGIL 2018).

``units.py`` holds what both share: the input unit (knowledge base, question, position-aware questions), the
output unit, the variational dropout masks and the initialisers; ``mac.py`` the MAC cell and model;
``s_mac.py`` the S-MAC cell and model; ``figures.py`` the per-step attention frames both draw.
"""
