"""Train formers' bundled default model (see src/formers/default_model/recipe.py); prints the wall
time and the held-out perplexity. Usage: python scripts/train_default_model.py [--max-steps N]"""
import os
import sys

# On a shared machine, spinning OpenMP threads fight other processes for the cores (a 2-4x slowdown
# measured here); passive waiting costs little when the machine is idle. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from formers.default_model.recipe import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
