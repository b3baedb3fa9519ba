"""The training recipe on TRL: SFT cold start, GRPO with medreward rewards and curricula, DPO pairs
(``medreward train``, ``medreward pairs``)."""
