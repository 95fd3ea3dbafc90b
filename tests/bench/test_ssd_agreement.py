"""bench/ssd_speed.py's check that edge-mm and OpenCV found the same objects: exact answers on made-up rows."""

from bench.ssd_speed import agreement

PERSON = ("person", 0.8, (10.0, 10.0, 100.0, 200.0))
CUP = ("cup", 0.9, (50.0, 50.0, 80.0, 90.0))


def frames(*rows):  # type: ignore[no-untyped-def]
    return [list(rows), [], [], []]  # one detection list per photo (four photos)


def test_same_objects_report_the_largest_corner_and_score_gaps():
    theirs = frames(("person", 0.75, (12.0, 7.0, 100.0, 201.0)), ("cup", 0.92, (50.0, 50.0, 80.0, 90.0)))
    check = agreement(frames(PERSON, CUP), theirs, 0.5)
    assert check["labels_equal"]
    assert check["unmatched"] == []
    assert check["box_px"] == 3.0
    assert check["worst"] == "astronaut.png person"
    assert round(check["score_gap"], 3) == 0.05


def test_a_weak_twin_counts_as_found_but_a_missing_label_does_not():
    weak = agreement(frames(PERSON), frames(("person", 0.4, PERSON[2])), 0.5)
    assert not weak["labels_equal"]  # 0.4 is under the threshold: the labels at 0.5 differ ...
    assert weak["unmatched"] == []  # ... but the box is there, scored over the low bar
    missing = agreement(frames(PERSON, CUP), frames(PERSON), 0.5)
    assert not missing["labels_equal"]
    assert missing["unmatched"] == ["astronaut.png: cup 0.90"]
