"""`python -m diffit_eval ...` (what torchrun launches) is the same as `diffit-eval ...`."""

from diffit_eval.cli import main

if __name__ == "__main__":
    main()
