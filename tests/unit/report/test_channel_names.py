"""Channel names reach pages (the CircuitsVis view's tokens, tables, figures): a name that
could be read as HTML, or that is not printable, is refused by name where a config, a
checkpoint, a layout or a converted model's ``chs_info`` gives it (issue 37 item 1), and
every name emg_lens ships passes."""

from __future__ import annotations

import json
import warnings

import pytest

from emg_lens import EncoderConfig
from emg_lens.checkpoints import save_checkpoint
from emg_lens.cli import main
from emg_lens.data.formats.ninapro_db2 import DB2_ELECTRODES
from emg_lens.data.registry import dataset_info, dataset_names
from emg_lens.errors import ConfigError, LayoutError, check_names
from emg_lens.geometry.ten_twenty import scalp_position
from emg_lens.layout import TokenLayout
from tests.tiny import tiny_isonet

SCRIPT = "</script><script>document.title='owned'</script>"
IMAGE = "<img src=x onerror=alert(1)>"


def test_every_shipped_channel_name_passes():
    shipped = [*DB2_ELECTRODES]
    for name in dataset_names():
        for names in dataset_info(name).channel_names.values():
            shipped += names
    rows = ("Fp", "AF", "F", "FC", "FT", "C", "T", "TP", "CP", "P", "PO", "O", "I", "N")
    ten_ten = [f"{r}{n}" for r in rows for n in ("z", *map(str, range(1, 11)))]
    placed = [n for n in ten_ten if _placed(n)]
    assert len(placed) > 70 and {"Fp1", "Cz", "T7", "O2", "Iz"} <= set(placed)
    shipped += [*placed, "EEG Fp1-REF", "T3", "Cz..", "EMG 1", "FDS_1", "µV ch 3", "ΔFz"]
    check_names(shipped, "shipped")  # raises on the first name that fails
    assert len(shipped) > 200


def _placed(name: str) -> bool:
    try:
        scalp_position(name)
    except Exception:
        return False
    return True


@pytest.mark.parametrize(
    ("name", "why"),
    [
        (SCRIPT, "markup character '<'"),
        (IMAGE, "markup character '<'"),
        ("C3 & C4", "markup character '&'"),
        ('C3"', "markup character '\"'"),
        ("C3'", 'markup character "\'"'),
        ("`C3`", "markup character '`'"),
        ("C3\n", r"unprintable character '\\n' \(U\+000A\)"),
        ("C3\u202e", r"U\+202E"),  # a right-to-left override: text that reads otherwise
    ],
)
def test_a_name_with_markup_or_unprintable_characters_is_refused_by_index_and_name(name, why):
    for build, family in (
        (
            lambda: EncoderConfig.preset("tiny", channel_names=["emg0", name, *_rest(4)]),
            ConfigError,
        ),
        (lambda: TokenLayout.channel_tokens({"eeg": 2}, channel_names=["C4", name]), LayoutError),
    ):
        with pytest.raises(family, match=why) as error:  # the family of the field given
            build()
        assert "channel_names[1] = " + repr(name) in str(error.value)
        assert error.value.index == 1 and error.value.name == name


def _rest(n: int) -> list[str]:
    return [f"acc{i}" for i in range(n)]


def test_a_layout_group_that_could_be_read_as_html_is_refused():
    with pytest.raises(LayoutError, match=r"TokenLayout groups\[1\] = '<b>'"):
        TokenLayout(("cls", "<b>"), (-1, 0), (-1, 0))


def test_inspect_refuses_a_checkpoint_whose_channel_names_carry_script(tmp_path, capsys):
    metadata = {"subject": 1, "data_source": {"dataset": "synthetic"}}
    path = save_checkpoint(tiny_isonet(), tmp_path / "subject_1", metadata=metadata)
    record = json.loads((path / "config.json").read_text())
    for i, bad in enumerate((SCRIPT, IMAGE)):
        record["config"]["channel_names"] = ["emg0", "emg1", "acc0", bad, "acc2", "acc3"]
        (path / "config.json").write_text(json.dumps(record))
        out = tmp_path / f"inspect{i}"
        assert main(["inspect", "--checkpoint", str(path), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"channel_names[3] = {bad!r} holds the markup character '<'" in err, err
        assert "Traceback" not in err and not out.exists()


def test_a_braindecode_model_whose_chs_info_carries_script_is_refused_by_name():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import braindecode.models as bd

        from emg_lens.models import from_braindecode

        source = bd.PBT(
            n_chans=3,
            n_times=16,
            n_outputs=4,
            d_input=4,
            embed_dim=16,
            num_layers=1,
            num_heads=4,
            chs_info=[{"ch_name": n} for n in ("C3", IMAGE, "C4")],
        )
    with pytest.raises(ConfigError, match=r"PBT.chs_info ch_name\[1\] = '<img"):
        from_braindecode(source)
