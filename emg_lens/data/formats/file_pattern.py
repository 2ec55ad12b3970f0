"""Path templates of trial files: ``"s{subject}/R_{repetition}_C_{gesture}.csv"``, a path
relative to a folder's root with named fields in braces (`FilePattern`), as LibEMG's
``OfflineDataHandler`` filters names with regexes; `emg_lens.data.formats.trial_files` reads
the trials a template matches. A field holds one path component's text (no ``/``), the text
between fields is matched literally, and a path the template reads two ways is refused."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from emg_lens.data.formats.trial_matrix import SUFFIXES
from emg_lens.errors import ArgumentError, DataFormatError

REQUIRED = ("gesture", "repetition")
"""The fields every template names."""

_FIELD = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class FilePattern:
    """A path template such as ``"s{subject}/R_{repetition}_C_{gesture}.csv"``.

    >>> FilePattern.parse("R_{repetition}_C_{gesture}_EMG.csv").match("R_0_C_4_EMG.csv")
    {'repetition': '0', 'gesture': '4'}
    """

    text: str
    fields: tuple[str, ...]
    regex: re.Pattern[str]  # each field its shortest value
    greedy: re.Pattern[str]  # each field its longest: a reading two ways shows as a difference

    @classmethod
    def parse(cls, text: Any) -> FilePattern:
        relative = (
            isinstance(text, str) and not text.startswith("/") and ".." not in text.split("/")
        )
        if not relative or not text.strip() or not text.lower().endswith(SUFFIXES):
            raise ArgumentError(
                "pattern must be a path template such as 'R_{repetition}_C_{gesture}.csv'; it must "
                "stay inside the root (no leading '/', no '..') and must end with a file extension "
                f"of {SUFFIXES}, got {text!r}"
            )
        fields: list[str] = []
        parts, at = [], 0
        for m in _FIELD.finditer(text):
            name = m.group(1)
            touch = f"{{{fields[-1]}}} and {{{name}}}" if fields and m.start() == at else ""
            _require(not touch, text, f"lets the fields {touch} touch: put '_' or '/' between")
            _require(
                name.isidentifier(), text, f"field {{{name}}} must be a name such as {{gesture}}"
            )
            _require(name not in fields, text, f"names the field {{{name}}} twice")
            parts.append(re.escape(text[at : m.start()]))
            parts.append(f"(?P<{name}>[^/]+?)")
            fields.append(name)
            at = m.end()
        braces = any("{" in p or "}" in p for p in _FIELD.split(text)[::2])
        _require(not braces, text, "has an unbalanced brace")
        parts.append(re.escape(text[at:]))
        greedy = re.compile("".join(p.replace("+?)", "+)") for p in parts))
        missing = ", ".join("{" + f + "}" for f in REQUIRED if f not in fields)
        _require(not missing, text, f"has no field {missing}: a path names its trial's labels")
        return cls(text, tuple(fields), re.compile("".join(parts)), greedy)

    def match(self, relative: str) -> dict[str, str] | None:
        """The fields of a path relative to the root (``/``-separated), or None. A path the
        pattern reads two ways is a `DataFormatError` naming both: a wrong reading is a wrong
        label.

        >>> FilePattern.parse("{gesture}_{repetition}.npy").match("wrist_flexion_1.npy")
        Traceback (most recent call last):
        ...
        emg_lens.errors.DataFormatError: wrist_flexion_1.npy: the pattern '{gesture}_{repetition}.npy' reads it two ways, gesture 'wrist', repetition 'flexion_1' or gesture 'wrist_flexion', repetition '1'; rename the files or choose a separator that no value contains
        """  # noqa: E501
        m = self.regex.fullmatch(relative)
        if m is None:
            return None
        # The shortest reading and the longest agree only when the reading is unique: each
        # field's shortest and longest feasible value, in order, are then one value.
        other = self.greedy.fullmatch(relative)
        if other is not None and other.groupdict() != m.groupdict():
            a, b = (", ".join(f"{k} {v!r}" for k, v in g.groupdict().items()) for g in (m, other))
            raise DataFormatError(
                f"{relative}: the pattern {self.text!r} reads it two ways, {a} or {b}; rename "
                "the files or choose a separator that no value contains"
            )
        return m.groupdict()


def _require(ok: object, text: str, message: str) -> None:
    """Refuse the pattern ``text`` unless ``ok``: an `ArgumentError` saying ``message``."""
    if not ok:
        raise ArgumentError(f"pattern {text!r} {message}")
