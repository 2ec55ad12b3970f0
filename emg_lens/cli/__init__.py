"""The ``emg-lens`` command line: one module per command, each parser beside its handler.

``demo`` (`emg_lens.cli.demo`), ``train`` and ``evaluate`` (`~emg_lens.cli.train`), ``study
run|check`` (`~emg_lens.cli.study`), ``synth``, ``inspect``, ``windows``, ``pretrain`` and
``finetune`` (`~emg_lens.cli.tinymyo`); `emg_lens.cli.main` assembles them and
`emg_lens.cli.common` holds what they share. Run ``emg-lens <command> --help``."""

from emg_lens.cli.main import build_parser, main, run

__all__ = ["build_parser", "main", "run"]
