"""Policy evaluation: sample a model on held-out cases and report reward, the task metric, pass@k and maj@k
(``medreward eval``)."""
