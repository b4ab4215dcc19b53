"""Tracking experiments in MLflow, besides their folders: the values sent, the sender thread, a folder's upload.

An optional extra (``pip install miprometheus[mlflow]``): nothing here imports MLflow at module level, and
only a run whose configuration asks for tracking imports this package's sender.
"""
