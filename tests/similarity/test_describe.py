"""The duplicate decision in words: the rule (with its both-tiers clause) and why a precision is missing."""

from __future__ import annotations

from types import SimpleNamespace

from auditor.similarity import decision
from auditor.similarity.decision import Rule
from auditor.similarity.describe import crowding_text, decision_text, precision_text, recall_text


def context(rule: Rule, relative: bool = False) -> SimpleNamespace:
    pairs = SimpleNamespace(relative_correlation=[0.9] if relative else None)
    return SimpleNamespace(duplicate_decision=SimpleNamespace(rule=rule, pairs=pairs),
                           config=SimpleNamespace(max_phash_distance=6, max_dhash_distance=10))


def test_the_rule_in_words_names_every_clause():
    assert decision_text(context(Rule(0.61, 0.89))) == "scaled cosine ≥ 0.61 or aligned pixel correlation ≥ 0.890"
    joint = Rule(0.61, 0.89, hash_alone=True, joint_scaled=0.41, joint_correlation=0.87)
    assert decision_text(context(joint)) == (
        "scaled cosine ≥ 0.61 or aligned pixel correlation ≥ 0.890 or scaled cosine ≥ 0.41 and aligned pixel "
        "correlation ≥ 0.870 together or pHash ≤ 6 and dHash ≤ 10 (any rotation or mirroring)")
    assert decision_text(context(Rule(None, None))) == "identical pixels only"
    # the calibrated pixel tier judges the correlation relative to the images' backgrounds, and says so
    assert decision_text(context(Rule(0.61, 0.89), relative=True)) == (
        "scaled cosine ≥ 0.61 or relative pixel correlation ≥ 0.890")
    checked = Rule(0.61, 0.89, pixel_min_scaled=-0.3)
    assert decision_text(context(checked)) == (
        "scaled cosine ≥ 0.61 or aligned pixel correlation ≥ 0.890 with scaled cosine ≥ -0.30 (not asked of rotated "
        "or grey-against-colour pairs)")


def test_summaries_say_why_precision_is_missing():
    assert precision_text({"precision": 0.93, "precision_interval": [0.71, 1.0]}) == ", precision 93% [71%, 100%]"
    assert precision_text({"precision": None, "precision_interval": None, "precision_note": None}) == ""
    text = precision_text({"precision": None, "precision_interval": None,
                           "precision_note": decision.PRECISION_UNSUPPORTED})
    assert text == ", precision " + decision.PRECISION_UNSUPPORTED


def test_recall_names_both_measurements_only_where_they_disagree():
    agree = {"recall": 0.9, "recall_interval": [0.83, 0.95], "recall_interval_copies": [0.88, 0.95],
             "recall_on_dataset": 0.87, "recall_on_dataset_interval": [0.83, 0.93], "recall_on_dataset_images": 40}
    assert recall_text(agree) == "90% [83%, 95%]"
    clean = {"recall": 0.9, "recall_interval": [0.0, 0.92], "recall_interval_copies": [0.88, 0.92],
             "recall_on_dataset": 0.0, "recall_on_dataset_interval": [0.0, 0.65], "recall_on_dataset_images": 2}
    assert recall_text(clean) == "90% [88%, 92%] on copies of its images, but 0% [0%, 65%] of the 2 images a more " \
                                 "sensitive rule flags"
    copies_only = {"recall": 0.9, "recall_interval": [0.88, 0.92], "recall_interval_copies": [0.88, 0.92],
                   "recall_on_dataset": None, "recall_on_dataset_interval": None}
    assert recall_text(copies_only) == "90% [88%, 92%]"
    assert recall_text({"recall": None, "recall_interval": None}) == "n/a"


def test_a_recall_weighted_to_the_flagged_images_says_so_and_gives_the_copies_plain_reading():
    weighted = {"recall": 0.96, "recall_interval": [0.53, 0.97], "recall_interval_copies": [0.53, 0.97],
                "recall_on_dataset": None, "recall_on_dataset_interval": None, "recall_copies_mix": 0.561,
                "recall_by_nearness": {"weighted": True}}
    assert recall_text(weighted) == ("96% [53%, 97%] (weighted to how near-identical the flagged images are to their "
                                     "partners; the copies' own mix: 56%)")
    plain = {**weighted, "recall": 0.561, "recall_by_nearness": {"weighted": False}}
    assert recall_text(plain) == "56% [53%, 97%]"


def test_the_summary_says_where_look_alikes_crowded_the_share_to_stricter_rules():
    assert crowding_text({"duplicate_share_recall_floor": 0.5}) == ""
    assert crowding_text({"duplicate_share_recall_floor": None}) == ""
    assert crowding_text({}) == ""
    text = crowding_text({"duplicate_share_recall_floor": 0.35})
    assert text.startswith("; look-alikes crowd this dataset") and "finding 35% of them" in text
