"""The negative-phase lengthening rule of the source."""
from nrflv.schedule import NegItSchedule


def _epochs(s, epochs, per_epoch, e_pos, e_neg, start=1):
    lengths = []
    for epoch in range(start, start + epochs):
        for _ in range(per_epoch):
            s.record(e_pos, e_neg)
        lengths.append(s.new_epoch(epoch))
    return lengths


def test_lengthens_by_a_quarter_after_epoch_5_then_cools_down():
    s = NegItSchedule(500, history=10)
    lengths = _epochs(s, 20, 10, e_pos=1.0, e_neg=2.0)
    # epochs 1-5: never; epoch 6: 625; cool-down 5 epochs (7-11); history refills each epoch; 12: 781
    assert lengths[:5] == [500] * 5
    assert lengths[5] == 625 and lengths[6:11] == [625] * 5 and lengths[11] == 781
    assert lengths[17] == 976


def test_never_when_negative_energies_stay_below():
    s = NegItSchedule(500, history=10)
    assert set(_epochs(s, 20, 10, e_pos=2.0, e_neg=1.0)) == {500}


def test_waits_for_full_histories_and_round_trips():
    s = NegItSchedule(500, history=100)
    assert set(_epochs(s, 8, 10, e_pos=1.0, e_neg=2.0)) == {500}  # 80 < 100 entries
    t = NegItSchedule(7, history=100)  # the same settings (the config); the state comes from s
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict()
    assert _epochs(s, 3, 10, 1.0, 2.0, start=9) == _epochs(t, 3, 10, 1.0, 2.0, start=9) == [500, 625, 625]  # full at epoch 10
