"""The parts without a model: the latest-frame slot, the tracker's events, zones, URL redaction,
the snapshot budget, the SQLite store."""

from __future__ import annotations

import threading

import pytest

from edge_mm.errors import Unprocessable
from edge_mm.streams.detect import Detection
from edge_mm.streams.slot import LatestFrame
from edge_mm.streams.snapshots import SnapshotStore
from edge_mm.streams.spec import parse_spec, redact_url, scrub
from edge_mm.streams.store import StreamStore
from edge_mm.streams.tracker import Tracker, inside


def test_the_slot_keeps_only_the_newest_frame():
    slot = LatestFrame()
    for i in range(1000):
        slot.put(i)
    frame = slot.newer(0)
    assert frame is not None
    assert (frame.seq, frame.data) == (1000, 999)
    assert slot.newer(1000) is None
    threading.Timer(0.05, slot.put, args=("late",)).start()
    late = slot.newer(1000, timeout=5)
    assert late is not None
    assert late.data == "late"


def face(x: float, score: float = 0.9, label: str = "face") -> Detection:
    return Detection(label, score, (x, 50.0, x + 60, 130.0))


def test_tracker_start_update_end():
    tr = Tracker(min_frames=2, end_after_s=1.0)
    no_zone = lambda d: None  # noqa: E731
    assert tr.update([face(10)], 0.0, no_zone) == []  # seen once: not yet
    ((kind, track),) = tr.update([face(14)], 0.2, no_zone)
    assert (kind, track.id) == ("start", 1)
    assert tr.update([face(18, 0.905)], 0.4, no_zone) == []  # score barely better: no update
    ((kind, _),) = tr.update([face(22, 0.97)], 0.6, no_zone)
    assert kind == "update"
    assert tr.counts() == {"face": 1}
    assert tr.update([], 1.0, no_zone) == []  # gone 0.4 s
    ((kind, ended),) = tr.update([], 1.7, no_zone)
    assert (kind, ended.id, ended.ended_at, ended.best_score) == ("end", 1, 0.6, 0.97)
    assert tr.counts() == {}


def test_tracker_keeps_ids_apart_and_follows_a_fast_mover():
    tr = Tracker(min_frames=1, end_after_s=5)
    zone = lambda d: None  # noqa: E731
    starts = tr.update([face(0), face(200), face(0, label="person")], 0.0, zone)
    assert sorted(t.id for _, t in starts) == [1, 2, 3]
    tr.update([face(45), face(200)], 0.1, zone)  # moved 45 px: boxes of 60 px barely overlap
    assert sorted((t.id, t.box[0]) for t in tr.tracks.values() if t.label == "face") == [(1, 45), (2, 200)]


def test_zone_change_is_an_update_and_bottom_centre_decides():
    square = [(0.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0)]
    assert inside((50, 50), square)
    assert not inside((150, 50), square)
    tr = Tracker(min_frames=1, end_after_s=5)
    zone_of = lambda d: "porch" if inside(d.bottom_centre, square) else None  # noqa: E731
    det = Detection("person", 0.9, (20, 20, 60, 90))
    ((kind, t),) = tr.update([det], 0, zone_of)
    assert (kind, t.zone) == ("start", "porch")
    ((kind, t),) = tr.update([Detection("person", 0.9, (25, 40, 65, 110))], 1, zone_of)  # feet left the zone
    assert (kind, t.zone) == ("update", None)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:pa55@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
        ("http://cam.local/snap.jpg?user=admin&pwd=pa55&res=hd", "http://cam.local/snap.jpg?user=***&pwd=***&res=hd"),
        ("rtsp://10.0.0.5/live", "rtsp://10.0.0.5/live"),
        ("/videos/demo.mp4", "/videos/demo.mp4"),
    ],
)
def test_urls_are_shown_without_credentials(url, shown):
    assert redact_url(url) == shown
    assert "pa55" not in scrub(f"could not open {url}: refused", url)


def test_a_bad_spec_is_a_422_that_never_shows_the_password():
    with pytest.raises(Unprocessable) as err:
        parse_spec({"id": "a b", "url": "ftp://u:pa55@x/y", "fps": 0})
    assert "pa55" not in str(err.value)
    with pytest.raises(Unprocessable):
        parse_spec({"id": "a", "url": "rtsp://x/y", "zones": [{"name": "z", "points": [[0, 0], [1, 1]]}]})
    with pytest.raises(Unprocessable):
        parse_spec({"id": "a", "url": "rtsp://x/y", "unknown": 1})


def test_snapshots_stay_within_their_budget(tmp_path):
    store = SnapshotStore(tmp_path, budget_bytes=2500)
    names = [store.save("cam", f"e{i}", b"\xff\xd8" + bytes(998)) for i in range(5)]
    assert all(names)
    kept = sorted(p.name for p in tmp_path.glob("cam/*.jpg"))
    assert kept == ["e3.jpg", "e4.jpg"]
    assert store.total == 2000
    again = SnapshotStore(tmp_path, budget_bytes=1500)  # a restart with a smaller budget prunes what is there
    assert again.total == 1000
    assert SnapshotStore(tmp_path / "none", budget_bytes=0).save("cam", "x", b"1") is None


def test_store_round_trip(tmp_path):
    store = StreamStore(tmp_path / "faces.db")
    assert store.all() == []
    store.delete("nothing")
    assert not (tmp_path / "faces.db").exists()  # no run-time stream: nothing written next to the settings
    store.put("a", {"id": "a", "url": "rtsp://u:p@h/x"})
    store.put("b", {"id": "b", "url": "x.mp4"})
    store.put("a", {"id": "a", "url": "rtsp://h/y"})
    store.delete("b")
    store.close()
    assert StreamStore(tmp_path / "faces.db").all() == [{"id": "a", "url": "rtsp://h/y"}]


def test_the_settings_table_and_the_spec_agree():
    from edge_mm.config import STREAM_SETTINGS
    from edge_mm.streams.spec import StreamSpec

    fields = StreamSpec.model_fields
    assert [s.key for s in STREAM_SETTINGS] == list(fields)
    for s in STREAM_SETTINGS:
        field = fields[s.key]
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        if s.default is not None:
            assert default == s.default, s.key


def _served(name: str, in_flight: int):  # type: ignore[no-untyped-def]
    from edge_mm.runtime.admission import Admission
    from edge_mm.runtime.registry import Served

    return Served(name, "face-detection", None, Admission(in_flight, 4, 5.0), "cpu", "cpu", None)  # type: ignore[arg-type]


def test_streams_leave_a_slot_for_rest():
    from edge_mm.streams.detect import StreamGate

    def free(sem: threading.Semaphore) -> int:
        n = 0
        while sem.acquire(blocking=False):
            n += 1
        return n

    assert free(StreamGate().semaphore(_served("a", 2))) == 1
    assert free(StreamGate().semaphore(_served("b", 4))) == 3
    assert free(StreamGate(concurrent=2).semaphore(_served("c", 16))) == 1  # micro-batched: 2 x 8 admitted
    assert free(StreamGate().semaphore(_served("d", 1))) == 1


def test_try_slot_never_waits_and_yields_to_queued_requests():
    served = _served("m", 1)
    adm = served.admission
    with adm.try_slot() as got:
        assert got
        assert adm.stats()["running"] == 1
        with adm.try_slot() as second:  # the one slot is taken: no wait, no slot
            assert not second
    adm.waiting = 1  # a REST request queued for a slot
    with adm.try_slot() as got:
        assert not got
    adm.waiting = 0
    assert adm.stats()["running"] == 0
