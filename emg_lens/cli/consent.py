"""The options of the commands that may run the user's Python code, and the consent they take:
``--allow-code`` (``study run``, ``discover``, ``inspect``, ``export``, ``evaluate``) and
``--modules FILE:FUNCTION``, the user's function that builds the tokenizer and readout of
converted ``nn.TransformerEncoder`` checkpoints, which no ``config.json`` rebuilds
(`emg_lens.user_code.ModuleBuilder`)."""

from __future__ import annotations

import argparse
from typing import Any

from emg_lens.errors import ArgumentError, EmgLensError

MODULES_HELP = (
    "FILE:FUNCTION, e.g. models.py:build_modules: your function build_modules(info) -> "
    '{"embed": module, "readout": module}, called with each checkpoint\'s config.json (a dict), '
    "that builds the modules of a converted nn.TransformerEncoder model (from_torch_encoder) "
    "with the architecture it was saved from; the checkpoint's weights are loaded into them. "
    "Runs only with --allow-code"
)


def add_allow_code_argument(p: argparse.ArgumentParser, help_text: str) -> None:
    """``--allow-code [SHA256]`` (repeatable), read by `allow_code`; ``help_text`` says what
    it lets run, and how.

    >>> p = argparse.ArgumentParser()
    >>> add_allow_code_argument(p, "run the study's Python files")
    >>> p.parse_args(["--allow-code"]).allow_code, p.parse_args([]).allow_code
    ([True], None)
    """
    p.add_argument(
        "--allow-code",
        nargs="?",
        action="append",
        const=True,
        metavar="SHA256",
        help=help_text,
    )


def add_modules_arguments(p: argparse.ArgumentParser) -> None:
    """``--modules FILE:FUNCTION`` and ``--allow-code``, read by `module_builder`."""
    p.add_argument("--modules", metavar="FILE:FUNCTION", help=MODULES_HELP)
    add_allow_code_argument(
        p,
        "run the --modules file: alone, as it is now (once you have read it); with its "
        "SHA-256, only a file with exactly those bytes",
    )


def allow_code(args: argparse.Namespace) -> bool | list[str]:
    """``--allow-code``: not given (no consent), alone (consent to the files as they are), or
    the SHA-256 digests `study check` listed (consent to exactly those bytes).

    >>> allow_code(argparse.Namespace(allow_code=[True])), allow_code(argparse.Namespace())
    (True, False)
    """
    given = getattr(args, "allow_code", None) or []
    digests = [value for value in given if value is not True]
    if digests and len(digests) < len(given):
        how = "alone (the files as they are now) or with each file's SHA-256 (`study check`)"
        raise EmgLensError(f"--allow-code: give it either {how}, not both")
    return digests or bool(given)


def module_builder(args: argparse.Namespace) -> Any:
    """The `emg_lens.user_code.ModuleBuilder` that ``--modules`` names, run with the
    consent of ``--allow-code`` (else a `SpecError` listing the file and its SHA-256,
    before anything runs); None without ``--modules`` (where a digest given to
    ``--allow-code`` is an `ArgumentError`: it consents to no file)."""
    if getattr(args, "modules", None) is None:
        if isinstance(allow_code(args), list):
            why = "consents to the --modules file with those bytes"
            raise ArgumentError(
                f"--allow-code SHA256 {why}, but no --modules FILE:FUNCTION was given"
            )
        return None
    from emg_lens.user_code import ModuleBuilder, locate_argument, require_consent

    code = locate_argument(args.modules, "--modules")
    consent = allow_code(args)
    require_consent([code], allow_code=consent, runs=f"--modules {args.modules}")
    return ModuleBuilder.load(code, allow_code=consent)
