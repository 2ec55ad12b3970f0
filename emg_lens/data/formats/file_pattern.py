"""Path templates of trial files: ``"s{subject}/R_{repetition}_C_{gesture}.csv"``, a path
relative to a folder's root with named fields in braces (`FilePattern`), as LibEMG's
``OfflineDataHandler`` filters names with regexes; `emg_lens.data.formats.trial_files` reads
the trials a template matches. A field holds one path component's text (no ``/``), the text
between fields is matched literally, and a path the template reads two ways is refused."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
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
        if not isinstance(text, str) or not text.strip():
            raise ArgumentError(
                f"pattern must be a path template such as 'R_{{repetition}}_C_{{gesture}}.csv', "
                f"got {text!r}"
            )
        if text.startswith("/") or ".." in Path(text).parts:
            raise ArgumentError(
                f"pattern {text!r} must be relative to the root and stay inside it (no leading "
                "'/', no '..')"
            )
        if not text.lower().endswith(SUFFIXES):
            raise ArgumentError(
                f"pattern {text!r} must end with a file extension emg_lens reads: "
                f"{', '.join(SUFFIXES)}"
            )
        fields: list[str] = []
        parts, at = [], 0
        for m in _FIELD.finditer(text):
            if fields and m.start() == at:
                raise ArgumentError(
                    f"pattern {text!r}: the fields {{{fields[-1]}}} and {{{m.group(1)}}} touch; "
                    "put a separator between them (such as '_' or '/'), or no name could be "
                    "split between them"
                )
            name = m.group(1)
            if not name.isidentifier():
                raise ArgumentError(
                    f"pattern {text!r}: field {{{name}}} must be a name of letters, digits and "
                    "underscores, such as {gesture}"
                )
            if name in fields:
                raise ArgumentError(f"pattern {text!r} names the field {{{name}}} twice")
            parts.append(re.escape(text[at : m.start()]))
            parts.append(f"(?P<{name}>[^/]+?)")
            fields.append(name)
            at = m.end()
        if any("{" in p or "}" in p for p in _FIELD.split(text)[::2]):
            raise ArgumentError(f"pattern {text!r} has an unbalanced brace")
        parts.append(re.escape(text[at:]))
        greedy = re.compile("".join(p.replace("+?)", "+)") for p in parts))
        if missing := [f for f in REQUIRED if f not in fields]:
            raise ArgumentError(
                f"pattern {text!r} has no field {', '.join('{' + f + '}' for f in missing)}: the "
                "gesture and the repetition of each trial must be in its path"
            )
        return cls(text, tuple(fields), re.compile("".join(parts)), greedy)

    def match(self, relative: str) -> dict[str, str] | None:
        """The fields of a path relative to the root (``/``-separated), or None. A path the
        pattern reads two ways (a separator of the pattern inside a field's value) is a
        `DataFormatError` naming both readings: a name read the wrong way is a wrong label.

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
            readings = [
                ", ".join(f"{k} {v!r}" for k, v in g.groupdict().items()) for g in (m, other)
            ]
            raise DataFormatError(
                f"{relative}: the pattern {self.text!r} reads it two ways, {readings[0]} or "
                f"{readings[1]}; rename the files or choose a separator that no value contains"
            )
        return m.groupdict()
