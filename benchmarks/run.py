"""Run cnnkit's benchmark harness from a clone: same as the installed `cnnkit bench` command.

    python benchmarks/run.py targets gemm pool models --json benchmarks/results/this-machine.json
"""

import sys

from cnnkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
