"""``python -m emg_lens.cli``: the ``emg-lens`` command, for launchers that run a module.

``-m`` puts the working directory first on ``sys.path``, so an ``emg_lens/`` folder there runs
in place of the installed package; launch the installed command instead where one can
(``torchrun --no-python emg-lens study run ...``, as docs/guide/scale-out.md does)."""

import sys

from emg_lens.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
