"""Workers: the Trainer, the Tester and (later) the grid workers."""
