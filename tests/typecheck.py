"""The runtime type checker the suite runs emg_lens under (pyproject's ``--jaxtyping-packages``):
beartype with PEP 484's numeric tower, as a static checker reads hints (an ``int`` is a
``float``), so a runtime check refuses only what mypy would."""

from beartype import BeartypeConf, beartype

tower = beartype(conf=BeartypeConf(is_pep484_tower=True))
