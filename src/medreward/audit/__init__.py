"""The reward audit: how a spec can be gamed, and how well it agrees with what a user cares about,
measured before any training (``medreward audit``, ``medreward compare``)."""
