"""Worst case over attacks, fooling images and the seed summary against hand-built tables."""

import numpy as np
import pytest

from robench_plugins.metrics._tables import worst_case_samples
from robench_plugins.metrics.accuracy import RobustAccuracy
from robench_plugins.metrics.fooling import Fooling
from robench_plugins.metrics.seeds import SeedSummary, SeedSummaryOptions
from robench_plugins.metrics.testing import result_frame
from robench_plugins.metrics.worst_case import WorstCase, WorstCaseOptions

# sample: (label, pred_clean, pred_adv under pgd, pred_adv under fgsm) at eps 0.1
TABLE = {
    0: (0, 0, 0, 0),   # robust
    1: (1, 1, 0, 1),   # broken by pgd only
    2: (2, 2, 2, 0),   # broken by fgsm only
    3: (3, 3, 0, 0),   # broken by both
    4: (4, 0, 0, 0),   # misclassified when clean
}


def table_frame():
    rows = []
    for sample, (label, clean, pgd, fgsm) in TABLE.items():
        rows.append(dict(attack="pgd", epsilon=0.1, sample=sample, label=label,
                         pred_clean=clean, pred_adv=pgd))
        rows.append(dict(attack="fgsm", epsilon=0.1, sample=sample, label=label,
                         pred_clean=clean, pred_adv=fgsm))
        # eps 0.2 only pgd has: not part of the worst case
        rows.append(dict(attack="pgd", epsilon=0.2, sample=sample, label=label,
                         pred_clean=clean, pred_adv=5))
        # another threat model is its own worst case
        rows.append(dict(attack="cw", threat_model="l2", epsilon=0.5, sample=sample,
                         label=label, pred_clean=clean, pred_adv=label if sample < 3 else 5))
    # a sample only pgd attacked is left out of the combination
    rows.append(dict(attack="pgd", epsilon=0.1, sample=9, label=1, pred_clean=1, pred_adv=1))
    return result_frame(rows)


def value(frame, **where):
    mask = np.ones(len(frame), dtype=bool)
    for col, v in where.items():
        mask &= (frame[col] == v).to_numpy()
    assert mask.sum() == 1, (where, frame[mask])
    return frame.loc[mask, "value"].iat[0]


def test_worst_case_matches_hand_table():
    out = WorstCase().from_results(table_frame())
    linf = out[out["threat_model"] == "linf"]
    assert set(linf["epsilon"].dropna()) == {0.1}           # (worst_case_auc has no eps)
    acc = linf[linf["metric"] == "worst_case_accuracy"]
    assert value(acc, convention="unconditional") == pytest.approx(1 / 5)
    assert value(acc, convention="conditional") == pytest.approx(1 / 4)
    assert acc["note"].iat[0] == "attacks: pgd,fgsm"
    first = linf[(linf["metric"] == "broken_first") & (linf["convention"] == "unconditional")]
    assert value(first, attack="pgd") == pytest.approx(2 / 5)
    assert value(first, attack="fgsm") == pytest.approx(1 / 5)
    only = linf[(linf["metric"] == "broken_only") & (linf["convention"] == "conditional")]
    assert value(only, attack="pgd") == pytest.approx(1 / 4)
    assert value(only, attack="fgsm") == pytest.approx(1 / 4)
    l2 = out[(out["threat_model"] == "l2") & (out["metric"] == "worst_case_accuracy")]
    assert value(l2, convention="unconditional") == pytest.approx(3 / 5)  # samples 0-2


def test_worst_case_auc_is_the_area_under_the_worst_case_curve():
    rows = []
    # pgd breaks sample i at eps >= 0.1 * (i + 1); fgsm breaks sample 3 from eps 0.1
    for eps in (0.0, 0.1, 0.2, 0.3):
        for i in range(4):
            rows.append(dict(attack="pgd", epsilon=eps, sample=i, label=0, pred_clean=0,
                             pred_adv=1 if eps >= 0.1 * (i + 1) - 1e-9 else 0))
            rows.append(dict(attack="fgsm", epsilon=eps, sample=i, label=0, pred_clean=0,
                             pred_adv=1 if (i == 3 and eps >= 0.1) else 0))
    out = WorstCase(WorstCaseOptions(bootstrap=200)).from_results(result_frame(rows))
    acc = out[(out["metric"] == "worst_case_accuracy") & (out["convention"] == "unconditional")]
    # worst case: eps 0 -> 4/4, 0.1 -> 2/4 (samples 0 by pgd, 3 by fgsm), 0.2 -> 1/4, 0.3 -> 0
    assert acc.sort_values("epsilon")["value"].tolist() == [1.0, 0.5, 0.25, 0.0]
    area = out[(out["metric"] == "worst_case_auc") & (out["convention"] == "unconditional")]
    expected = ((1 + .5) / 2 * .1 + (.5 + .25) / 2 * .1 + (.25 + 0) / 2 * .1) / .3
    assert area["value"].iat[0] == pytest.approx(expected)
    assert area["lower"].iat[0] <= expected <= area["upper"].iat[0]
    assert (area["eps_min"].iat[0], area["eps_max"].iat[0]) == (0.0, 0.3)


def test_worst_case_records_which_attack_broke_each_sample():
    table = worst_case_samples(table_frame(), order=("fgsm",))
    linf = table[table["threat_model"] == "linf"].set_index("sample")
    assert sorted(linf.index) == [0, 1, 2, 3, 4]
    assert linf["broken_by"].to_dict() == {0: "", 1: "pgd", 2: "fgsm", 3: "fgsm", 4: "(clean)"}
    assert linf.loc[3, "broken_by_all"] == "fgsm,pgd"
    assert linf["robust"].to_dict() == {0: True, 1: False, 2: False, 3: False, 4: False}

    out = WorstCase(WorstCaseOptions(per_sample=True)).from_results(table_frame())
    per = out[(out["metric"] == "worst_case_robust") & (out["threat_model"] == "linf")]
    assert per.set_index("sample")["broken_by"].to_dict()[3] == "pgd"
    assert per["value"].sum() == 1


def test_worst_case_targeted_attack_counts_every_target():
    rows = [dict(attack="jsma", target=t, epsilon=0.1, sample=0, label=0, pred_clean=0,
                 pred_adv=2 if t == 2 else 0) for t in (1, 2)]
    rows += [dict(attack="pgd", epsilon=0.1, sample=0, label=0, pred_clean=0, pred_adv=0)]
    table = worst_case_samples(result_frame(rows))
    assert table["broken_by"].tolist() == ["jsma"]


def test_fooling_success_threshold_and_margin():
    # 4 noise inputs x 1 target at one eps: (pred_adv, confidence, margin)
    cases = [(3, 0.9, 0.85), (3, 0.4, 0.1), (1, 0.95, 0.9), (3, 0.6, 0.3)]
    rows = [dict(attack="fool", source="noise", epsilon=0.1, sample=i, label=None, target=3,
                 pred_clean=0, pred_adv=p, confidence=c, margin=m)
            for i, (p, c, m) in enumerate(cases)]
    rows.append(dict(attack="pgd", epsilon=0.1, sample=0, label=0, pred_clean=0, pred_adv=0))
    out = Fooling().from_results(result_frame(rows))
    assert set(out["attack"]) == {"fool"}
    assert value(out, metric="fooling_success") == pytest.approx(3 / 4)
    assert value(out, metric="fooling_success_threshold") == pytest.approx(2 / 4)
    assert value(out, metric="fooling_margin") == pytest.approx(np.mean([.85, .1, .9, .3]))
    assert Fooling().from_results(result_frame(rows[-1:])) is None  # no noise rows


def test_seed_summary_mean_and_t_interval():
    accs = {0: 0.5, 1: 0.75, 2: 1.0}
    rows = []
    for seed, acc in accs.items():
        for i in range(4):
            rows.append(dict(seed=seed, epsilon=0.1, sample=i, label=0, pred_clean=0,
                             pred_adv=0 if i < acc * 4 else 1))
    out = SeedSummary(SeedSummaryOptions(metrics=("robust_accuracy",))).from_metrics(
        RobustAccuracy().from_results(result_frame(rows)))
    row = out[(out["metric"] == "robust_accuracy_over_seeds")
              & (out["convention"] == "unconditional")].iloc[0]
    assert row["value"] == pytest.approx(0.75)
    assert row["n_seeds"] == 3
    # t(0.975, 2) = 4.3027; s = 0.25; half-width = 4.3027 * 0.25 / sqrt(3)
    assert row["upper"] - row["value"] == pytest.approx(4.302653 * 0.25 / np.sqrt(3), rel=1e-5)
    assert out["seed"].isna().all()
    assert row["cell"] == "m/none/0,m/none/1,m/none/2"
