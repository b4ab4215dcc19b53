"""The dual tasks of Jayram et al. 2018 (arXiv:1809.11087): memory subsequences interleaved with distractions,
interruptions or operations; the conventions they share are in :mod:`.dual_task`."""
