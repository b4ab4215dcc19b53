"""The dual tasks (specs/algorithmic_tasks.md §4): memory subsequences interleaved with distractions,
interruptions or operations; the conventions they share are in :mod:`.dual_task`."""
