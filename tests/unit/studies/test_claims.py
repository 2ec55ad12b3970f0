"""Claims a study file declares (`emg_lens.studies.claims`, issue 41 item 2): every field
refused by name when the study could not test it; the verdicts on synthetic class counts (a
collapse is a significant drop after the study's correction; "keeps its accuracy" is an
equivalence claim, decided by the change's interval, never by a p-value, which calls a
consistent -0.5 % significant with enough subjects and any change "ns" with too few); a run
writes claims.csv and a Claims section at the top of summary.md and report.html; `study check`
lists them; the demo's study declares exactly the planted claims."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pandas as pd
import pytest

from emg_lens import EncoderConfig
from emg_lens.cli import main
from emg_lens.errors import SpecError, StudyError
from emg_lens.studies import load_spec, run_study
from emg_lens.studies.claims import CLAIM_COLUMNS, evaluate_claims
from emg_lens.studies.stats import bootstrap_delta_ci
from tests.tiny import tiny_subject

BASE = np.array([0.99, 1.0, 0.995, 1.0, 0.98, 1.0, 0.99, 0.995])
STUDY = {
    "name": "claims",
    "models": "unused",
    "interventions": [
        {"name": "cross", "edges": "cross_modal"},
        {"name": "zero", "zero_modality": "acc"},
    ],
    "layers": {"modes": ["individual", "all"]},
    "class_groups": {"pair": [0, 1]},
}
DROP = {"intervention": "cross", "layers": "all", "classes": "pair", "expect": "drop"}
KEEP = {"intervention": "cross", "layers": "all", "classes": [2], "expect": "keep", "margin": 0.05}


def _spec(*claims, **changes):
    return load_spec({**STUDY, **changes, "claims": list(claims)})


# ----------------------------------------------------------------------------- the file


def test_claims_read_back_and_leave_the_studys_identity_alone():
    spec = _spec(DROP, KEEP)
    assert load_spec(spec.to_dict()) == spec
    assert [c.expected for c in spec.claims] == ["significant drop", "Δ% within ±5%"]
    # claims are read from the cells, so declaring them reuses a finished study's store
    assert spec.fingerprint() == load_spec(STUDY).fingerprint()
    assert "claims" not in load_spec(STUDY).to_dict()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            {"intervention": "uni"},
            r"intervention = 'uni' is not an intervention.*\['cross', 'zero'\]",
        ),
        ({"layers": "from_first 1"}, r"mode 'from_first' is not in the study's layers.modes"),
        ({"layers": "every"}, r"layers = 'every'; accepted: 'all', 'input'"),
        ({"layers": "individual"}, r"layers = 'individual'; accepted"),
        ({"layers": "input"}, r"acts on layers; name one of the study's layer modes"),
        ({"intervention": "zero"}, r"ablates an input \(zero_modality\).*layers = 'input'"),
        ({"layers": "explicit 0,1"}, r"mode 'explicit' is not in the study's layers.modes"),
        ({"classes": "interaction"}, r"classes = 'interaction' is not 'all' or a name.*\['pair'\]"),
        ({"classes": []}, r"classes = \[\]; accepted"),
        ({"classes": [1, 1]}, r"classes repeats 1"),
        ({"classes": [-1]}, r"negative index"),
        ({"expect": "same"}, r"expect = 'same'; accepted: 'drop'"),
        ({"margin": 0.05}, r"margin = 0.05 belongs to expect = 'keep'"),
        ({"expect": "keep"}, r"margin = None; a 'keep' claim needs a margin in \(0, 1\]"),
        ({"expect": "keep", "margin": 0}, r"margin = 0; a 'keep' claim needs a margin in"),
        ({"expect": "keep", "margin": 5}, r"margin = 5; a 'keep' claim needs a margin in"),
        ({"expect": "keep", "margin": True}, r"margin = True; a 'keep' claim needs"),
        ({"expcet": "drop"}, r"unknown key\(s\) \['expcet'\] in \[claims\[0\]\]"),
        ({"classes": None}, r"claims\[0\] needs 'classes'"),
    ],
)
def test_a_claim_the_study_cannot_test_is_refused_by_name(change, match):
    with pytest.raises(SpecError, match=match):
        _spec({**DROP, **change})


def test_layers_heads_and_groups_are_checked_against_the_study():
    with pytest.raises(SpecError, match=r"layer 3 is not in the study's layers.layers \[0, 1\]"):
        _spec(
            {**DROP, "layers": "individual 3"}, layers={"modes": ["individual"], "layers": [0, 1]}
        )
    explicit = {"modes": ["explicit"], "explicit": [[1, 0]]}
    assert _spec({**DROP, "layers": "explicit 0, 1"}, layers=explicit).claims[0].layer == (0, 1)
    with pytest.raises(SpecError, match=r"is not one of the study's layers.explicit \[\[0, 1\]\]"):
        _spec({**DROP, "layers": "explicit 0"}, layers=explicit)
    with pytest.raises(SpecError, match="needs heads: the study has 2 head sets"):
        _spec(DROP, heads=["all", [0]])
    assert _spec({**DROP, "heads": [0]}, heads=["all", [0]]).claims[0].heads == (0,)
    with pytest.raises(SpecError, match="name 'all' is not an identifier other than 'all'"):
        _spec(DROP, class_groups={"all": [0]})
    with pytest.raises(SpecError, match=r"class_groups.pair = 'x'; accepted: a list"):
        _spec(DROP, class_groups={"pair": "x"})
    with pytest.raises(SpecError, match="claims must be a list of"):
        load_spec({**STUDY, "claims": DROP})


# ----------------------------------------------------------------------------- verdicts


def _counts(masked, baseline, total: int = 1000) -> pd.DataFrame:
    """Class counts of one class (index 0) whose per-subject accuracy is ``baseline`` and,
    under the ``cross · all`` condition, ``masked`` (``total`` windows per subject)."""
    rows = []
    for s, (m, b) in enumerate(zip(masked, baseline), 1):
        for name, mode, layers, accuracy in (
            ("baseline", "none", "", b),
            ("cross", "all", "0,1", m),
        ):
            rows.append(
                {
                    "subject": s, "intervention": name, "mode": mode, "layer": None,
                    "layers": layers, "heads": "all", "key": name,
                    "class_correct": [round(accuracy * total)], "class_total": [total],
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def _verdict(expect, masked, baseline, test="mannwhitneyu", **claim):
    spec = _spec({**DROP, "classes": [0], "expect": expect, **claim})
    table = evaluate_claims(spec.claims, {}, _counts(masked, baseline), test, "bonferroni")
    assert list(table.columns) == CLAIM_COLUMNS
    return table.iloc[0]


@pytest.mark.parametrize("test", ["mannwhitneyu", "wilcoxon"])
def test_a_tiny_consistent_drop_is_significant_and_still_keeps_the_accuracy(test):
    base = np.ones(8)  # the controls at ceiling, as on the demo
    row = _verdict("keep", base - np.linspace(0.003, 0.007, 8), base, test, margin=0.05)
    assert row.p < 0.05  # the rule "no significant change" would call this lost
    assert -1 < row.ci_low < row.ci_high < 0
    assert row.verdict == "holds" and "lies within ±5%" in row.reason


def test_a_drop_past_the_margin_fails_whatever_its_p_value():
    row = _verdict("keep", BASE * 0.9, BASE, margin=0.05)
    assert row.delta_pct == pytest.approx(-10, abs=0.1)
    assert row.verdict == "fails" and "wholly outside ±5%" in row.reason


def test_keeping_needs_the_whole_interval_within_the_margin_not_only_the_mean():
    """A mean change of -2 % whose interval reaches past -5 % shows neither that the
    accuracy was kept nor that it was lost: two subjects of eight lost a fifth of it."""
    base = BASE * 0.9
    masked = base.copy()
    masked[:2] -= 0.2
    masked[2:] += 0.04
    row = _verdict("keep", masked, base, margin=0.05)
    assert row.ci_low < -5 < row.delta_pct < 0 < row.ci_high < 5
    counted = [np.round(x * 1000) / 1000 for x in (masked, base)]  # as the class counts hold them
    assert (row.ci_low, row.ci_high) == bootstrap_delta_ci(*counted)
    assert row.verdict == "cannot tell" and "reaches past ±5%" in row.reason


def test_one_subject_cannot_tell_either_way():
    assert _verdict("keep", [0.99], [0.99], margin=0.05).verdict == "cannot tell"
    assert _verdict("drop", [0.2], [0.9]).verdict == "cannot tell"


def test_a_collapse_holds_a_rise_fails_and_too_few_subjects_cannot_tell():
    low, high = 0.25 + np.linspace(0, 0.02, 8), 0.6 + np.linspace(0, 0.02, 8)
    assert _verdict("drop", low, high).verdict == "holds"
    rise = _verdict("drop", high, low)
    assert rise.p_corr < 0.05 and rise.verdict == "fails" and "significant rise" in rise.reason
    two = _verdict("drop", low[:2], high[:2])  # Mann-Whitney's floor with 2 subjects: 0.33
    assert two.verdict == "cannot tell" and "smallest p_corr this test can reach" in two.reason
    same = _verdict("drop", high, high)  # 8 subjects could have shown a drop: none is there
    assert same.verdict == "fails" and "no significant drop" in same.reason


def test_drop_claims_are_one_correction_family_and_keep_claims_stay_out_of_it():
    low, high = 0.25 + np.linspace(0, 0.02, 6), 0.6 + np.linspace(0, 0.02, 6)
    counts = _counts(low, high)
    one = {**DROP, "classes": [0]}
    keep = {**one, "expect": "keep", "margin": 0.5}
    claims = _spec(one, {**one, "description": "again"}, keep).claims
    table = evaluate_claims(claims, {}, counts, "mannwhitneyu", "bonferroni")
    assert table.p_corr[0] == pytest.approx(2 * table.p[0])  # m = 2: the keep claim is no test
    assert np.isnan(table.p_corr[2]) and table.stars[2] == ""
    alone = evaluate_claims(claims[:1], {}, counts, "mannwhitneyu", "bonferroni")
    assert alone.p_corr[0] == alone.p[0]


def test_a_claim_beyond_the_models_is_refused_by_name():
    counts = _counts([0.2, 0.3], [0.9, 0.8])
    spec = _spec({**DROP, "classes": [0, 3]})
    with pytest.raises(SpecError, match=r"claims\[0\].classes: class index 3 is out of range"):
        evaluate_claims(spec.claims, {}, counts, "mannwhitneyu", "bonferroni")
    spec = _spec({**DROP, "classes": [0], "layers": "individual 7"})
    with pytest.raises(SpecError, match=r"matches no condition.*\['all'\]"):
        evaluate_claims(spec.claims, {}, counts, "mannwhitneyu", "bonferroni")
    counts["class_total"] = [[0]] * len(counts)  # no window of the class: nothing to test
    with pytest.raises(StudyError, match="subject 1 has no test window of classes"):
        evaluate_claims(_spec({**DROP, "classes": [0]}).claims, {}, counts, "mannwhitneyu", "none")


# ----------------------------------------------------------------------------- a run


def test_a_study_with_claims_writes_claims_csv_and_puts_them_first(tmp_path):
    subjects = {s: tiny_subject(s, 16, subject=s, perturb=True) for s in range(1, 4)}
    claims = [
        {**DROP, "description": "the <pair> drops"},
        {**KEEP, "layers": "individual 0"},
        {"intervention": "zero", "layers": "input", "classes": "all", "expect": "keep",
         "margin": 1.0},
    ]  # fmt: skip
    result = run_study(_spec(*claims), models=subjects, out_dir=tmp_path, progress=False)
    table = pd.read_csv(tmp_path / "claims.csv")
    assert list(table.columns) == CLAIM_COLUMNS and len(table) == 3
    assert set(table.verdict) <= {"holds", "fails", "cannot tell"}
    # the accuracy of a claim's classes, from the per-class table every run writes
    per_class = result.per_class()
    pair = per_class[per_class["class"].isin([0, 1]) & (per_class.intervention == "baseline")]
    by_subject = pair.groupby("subject")[["correct", "total"]].sum()
    assert table.baseline[0] == pytest.approx((by_subject.correct / by_subject.total).mean())
    assert table.condition.tolist() == [
        "cross · all (layers 0,1)", "cross · individual 0 (layers 0)", "zero · input",
    ]  # fmt: skip
    summary = (tmp_path / "summary.md").read_text()
    assert summary.index("## Claims") < summary.index("Baseline accuracy")
    assert "the <pair> drops" in summary  # as written; the report escapes it
    report = (tmp_path / "report.html").read_text()
    assert "the &lt;pair&gt; drops" in report and "<pair>" not in report
    assert report.index(">Claims<") < report.index("Baseline accuracy")
    assert "Claims (two-sided Mann–Whitney U over 3 subjects" in result.console()


def test_study_check_lists_the_claims_and_refuses_a_class_the_models_lack(tmp_path, capsys):
    from emg_lens.checkpoints import save_checkpoint
    from emg_lens.models import IsoNet

    study = tmp_path / "study.toml"
    text = textwrap.dedent(
        f"""
        name = "s"
        models = "{tmp_path / "m"}"
        [[interventions]]
        name = "cross"
        edges = "cross_modal"
        [layers]
        modes = ["all"]
        [class_groups]
        pair = [0, {{last}}]
        [[claims]]
        intervention = "cross"
        layers = "all"
        classes = "pair"
        expect = "drop"
        """
    )
    study.write_text(text.format(last=1))
    assert main(["study", "check", str(study)]) == 0  # no models: no class count to check
    out = capsys.readouterr().out
    assert "claims, tested after the run" in out and "pair (0,1)  significant drop" in out
    save_checkpoint(IsoNet(EncoderConfig.preset("tiny")), tmp_path / "m" / "subject_1")
    study.write_text(text.format(last=4))  # the tiny preset has 4 classes
    assert main(["study", "check", str(study)]) == 2
    assert "class index 4 is out of range: the models have 4 classes" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the demo


def test_the_demo_study_declares_exactly_the_planted_claims():
    from emg_lens.cli.demo import DEMO_STUDY
    from emg_lens.data.synthetic.emg_acc import demo_setup, gesture_kinds
    from emg_lens.studies.planted import kind_groups, planted_claims

    spec = load_spec(DEMO_STUDY)
    kinds = gesture_kinds(demo_setup()[0])
    groups = kind_groups(kinds, sorted(kinds))
    assert dict(spec.class_groups) == {k: tuple(v) for k, v in groups.items()}
    assert spec.claims == planted_claims(groups)


def test_the_readmes_claims_example_is_the_demo_studys():
    """README "Two commands" shows `[[claims]]` as the demo study declares them."""
    from pathlib import Path

    from emg_lens.cli.demo import DEMO_STUDY

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("## Two commands", 1)[1].split("## In a notebook", 1)[0]
    (example,) = [b for b in re.findall(r"```toml\n(.*?)```", section, flags=re.S)]
    demo = load_spec(DEMO_STUDY)
    shown = load_spec({**demo.to_dict(), **tomllib.loads(example)})
    assert shown.claims == demo.claims and shown.class_groups == demo.class_groups


def test_planted_findings_test_undeclared_claims_as_a_declaring_study_would():
    """A notebook's study that declares nothing (notebook 06): `planted_findings` builds the
    planted claims on its widest cut and tests them exactly as the run tests declared ones."""
    from emg_lens.studies.planted import format_findings, planted_claims, planted_findings

    subjects = {s: tiny_subject(s, 16, subject=s, perturb=True) for s in range(1, 4)}
    groups = {"interaction": [2, 3], "unimodal": [0, 1]}
    plain = {k: v for k, v in STUDY.items() if k != "class_groups"}
    result = run_study(load_spec(plain), models=subjects, progress=False)
    findings = planted_findings(result, groups)
    declared = load_spec({**plain, "class_groups": groups})
    declared = declared.with_changes(claims=[c.to_dict() for c in planted_claims(groups)])
    again = run_study(declared, models=subjects, progress=False).claims()
    pd.testing.assert_frame_equal(findings, again)
    text = format_findings(findings)
    assert text.startswith("Planted vs found (cross · all (layers 0,1): every cross-modal")
    assert text.count("  planted: ") == 2
