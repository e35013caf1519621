"""Human feedback on a policy's samples: tasks (a prompt and its K responses), labels (a ranking,
1-7 scores, flags, a correction, critiques, or a skip), the Labeler interface that produces
them, and their export into the comparisons and demonstrations later stages train on; for
people, the label store (store.py, sqlite_store.py), accounts, agreement, the labeling web app
(app/) and `python -m framework label` (command.py)."""
