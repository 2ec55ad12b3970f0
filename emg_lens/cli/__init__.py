"""The ``emg-lens`` command line: one module per command (``emg_lens.cli.<command>``; ``train``
also holds ``evaluate``, ``tinymyo`` ``pretrain`` and ``finetune``), each parser beside its
handler; `emg_lens.cli.main` assembles them and `emg_lens.cli.common` holds what they share."""

from emg_lens.cli.main import build_parser, main, run

__all__ = ["build_parser", "main", "run"]
