"""``python -m emg_lens.cli``: the ``emg-lens`` command, for launchers that run a module
(``torchrun --nproc-per-node 2 -m emg_lens.cli study run ...``)."""

import sys

from emg_lens.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
