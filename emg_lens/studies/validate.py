"""Checks shared by the study spec readers (`emg_lens.studies.ablation.spec` for ablation studies,
`emg_lens.studies.training.spec` for training studies). Each returns the value it checked, or
raises `SpecError` naming the key at fault and what would be accepted.

>>> check_int_list([1, 2], "subjects")
(1, 2)
>>> refuse_unknown("stats", {"tset": "t"}, {"test", "correction"})
Traceback (most recent call last):
...
emg_lens.errors.SpecError: unknown key(s) ['tset'] in [stats]; accepted: ['correction', 'test']
"""

from __future__ import annotations

from typing import Any

from emg_lens.errors import SpecError, check_ints, check_type


def refuse_unknown(section: str, data: dict, allowed: set[str]) -> None:
    """Refuse keys of ``[section]`` outside ``allowed`` (a typo must not be ignored).

    >>> refuse_unknown("layers", {"modes": ["all"]}, {"modes", "layers"})
    """
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SpecError(f"unknown key(s) {unknown} in [{section}]; accepted: {sorted(allowed)}")


def refuse_repeats(key: str, items: list) -> None:
    """Two equal entries would give two rows with one meaning (and one key).

    >>> refuse_repeats("heads", [(0,), (0,)])
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: heads repeats (0,); each entry must be distinct
    """
    seen = set()
    for item in items:
        if item in seen:
            raise SpecError(f"{key} repeats {item!r}; each entry must be distinct")
        seen.add(item)


def check_string(value: Any, where: str) -> Any:
    """``value`` when it is a string or None: a TOML table, list or number where text is
    expected is an error, never turned into text.

    >>> check_string("free text", "description"), check_string(None, "description")
    ('free text', None)
    >>> check_string({"text": "a"}, "description")
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: description must be a string or None, got {'text': 'a'}
    """
    return check_type(value, str | None, where, SpecError)


def check_list(value: Any, key: str, accepted: str) -> list:
    """``value`` as a list when it is a non-empty list (a TOML array) or tuple (a spec built in
    Python), the one shape of a study's lists.

    >>> check_list([], "architectures", "a non-empty list of ['IsoNet']")
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: architectures = []; accepted: a non-empty list of ['IsoNet']
    """
    if not isinstance(value, list | tuple) or not value:
        raise SpecError(f"{key} = {value!r}; accepted: {accepted}")
    return list(value)


def require_strings(data: dict, keys: tuple[str, ...]) -> None:
    """Every study key of ``keys`` is in ``data`` as a non-empty string (what a study runs on:
    ``models``, ``recording``; its ``name`` is `study_name`'s).

    >>> require_strings({"name": "a", "models": ""}, ("name", "models"))
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: study key 'models' is required and must be a non-empty string
    """
    for key in keys:
        if not check_string(data.get(key), f"study key {key!r}"):
            raise SpecError(f"study key {key!r} is required and must be a non-empty string")


def check_study_name(value: Any) -> str:
    """The study key ``name`` when it can name the study's output folder (``runs/studies/<name>``,
    a discovery study's ``runs/discovery/<name>``): one plain folder name, never a path that
    would put the study (summary.md, report.html, its tables) anywhere else.

    >>> check_study_name("planted demo")
    'planted demo'
    >>> check_study_name("../../victim")
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: study key 'name' = '../../victim' is no folder name (it names the study's output folder, runs/studies/<name>); accepted: printable text without '/' or '\\', not starting with '.' or '~', at most 100 characters
    """  # noqa: E501
    require_strings({"name": value}, ("name",))
    why = "(it names the study's output folder, runs/studies/<name>); accepted: printable text"
    accepted = "without '/' or '\\', not starting with '.' or '~', at most 100 characters"
    fits = len(value) <= 100 and len(value.encode()) <= 255  # a folder name's bytes
    if not fits or {"/", "\\"} & set(value) or value[0] in ".~" or not value.isprintable():
        raise SpecError(f"study key 'name' = {value!r} is no folder name {why} {accepted}")
    return value


def check_int_list(value: Any, key: str, minimum: int | None = None) -> tuple[int, ...]:
    """``value`` as a tuple when it is a list (or tuple) of integers (not booleans), each >=
    ``minimum`` if given.

    >>> check_int_list([True], "heads[0]")
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: heads[0] must be a list of integers, got [True]
    """
    if not isinstance(value, list | tuple):  # TOML's and JSON's lists; a set has no order
        raise SpecError(f"{key} must be a list of integers, got {value!r}")
    return tuple(check_ints(value, key, minimum, error=SpecError, empty=True))


def check_subjects(value: Any, key: str, minimum: int | None = None) -> tuple[int, ...]:
    """``value`` as a tuple when it is a non-empty list of distinct integers (each >=
    ``minimum``, if given): an empty list would select no subject, which is no study.

    >>> check_subjects([3, 1], "subjects")
    (3, 1)
    >>> check_subjects([], "subjects")
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: subjects = [] selects no subject; accepted: a non-empty list of distinct subject numbers, or no key: every subject
    """  # noqa: E501
    subjects = check_int_list(value, key, minimum)
    if not subjects:
        accepted = "a non-empty list of distinct subject numbers, or no key: every subject"
        raise SpecError(f"{key} = [] selects no subject; accepted: {accepted}")
    refuse_repeats(key, list(subjects))
    return subjects


def check_table(value: Any, key: str) -> dict:
    """``value`` when it is a table (a dict) for the section ``[key]``.

    >>> check_table([1], "stats")
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: [stats] must be a table, got [1]
    """
    if not isinstance(value, dict):
        raise SpecError(f"[{key}] must be a table, got {value!r}")
    return value


def check_modules(value: Any) -> str | None:
    """The study key ``modules`` (None when absent): ``"path/file.py:function"``, the function
    that builds the user's own modules of checkpoints that hold some (`emg_lens.user_code`).

    >>> check_modules("models.py:build_modules"), check_modules(None)
    ('models.py:build_modules', None)
    >>> check_modules("models.py")
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: modules must look like 'models.py:build_modules' (a Python file in the study's project and a function in it), got 'models.py'
    """  # noqa: E501
    accepted = "'models.py:build_modules' (a Python file in the study's project and a function "
    accepted += "in it)"
    ref = check_string(value, "modules (a 'file.py:function' reference)")
    if ref is not None and (":" not in ref or not ref.rpartition(":")[2].isidentifier()):
        raise SpecError(f"modules must look like {accepted}, got {ref!r}")
    return ref
