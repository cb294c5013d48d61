"""One module per family: `CASES = {name: family_checks.Case(...)}` (see family_checks.py)."""
