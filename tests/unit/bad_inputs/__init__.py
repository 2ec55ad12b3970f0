"""Rows of `tests/unit/test_bad_inputs.py`'s table, by area (issue 23).

Each module holds ``ROWS``: ``(id, trigger, error class, substring the message must contain)``,
where ``trigger(tmp_path)`` provokes the bad input; `test_bad_inputs.BAD_INPUTS` adds them to
its own rows, so every case is one parametrised test with a unique id.
"""
