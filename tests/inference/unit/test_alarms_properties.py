"""Property: any evaluation stream gives a well-formed alert lifecycle, never a duplicate alert."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from inference.alarms import (
    AlarmPolicy,
    AlarmTracker,
    AlertKey,
    DeEscalate,
    Escalate,
    Evaluation,
    Level,
    Open,
    Resolve,
    Update,
)

T0 = datetime(2026, 11, 28, tzinfo=UTC)
KEY = AlertKey("p", "c")

steps = st.lists(
    st.tuples(st.integers(1, 40), st.sampled_from(list(Level)), st.sampled_from([None, *Level])),
    max_size=120,
)
policies = st.builds(
    AlarmPolicy,
    persistence_s=st.sampled_from([0, 10, 30]),
    clear_s=st.sampled_from([0, 20, 60]),
    deescalate_s=st.sampled_from([0, 30]),
    update_interval_s=st.sampled_from([0, 60]),
)


@settings(max_examples=300, deadline=None)
@given(steps, policies)
def test_lifecycle_is_well_formed(stream, policy):
    tracker = AlarmTracker()
    now, open_episode, level, seen = T0, None, Level.NONE, set()
    for n, (gap, lvl, hold) in enumerate(stream):
        now += timedelta(seconds=gap)
        for action in tracker.step(KEY, Evaluation(now, lvl, (f"o{n}",), hold), policy):
            if isinstance(action, Open):
                assert open_episode is None and action.episode_id not in seen
                assert action.level > Level.NONE
                open_episode, level = action.episode_id, action.level
                seen.add(open_episode)
                continue
            assert action.episode_id == open_episode
            if isinstance(action, Escalate):
                assert action.previous == level and action.level > level
            elif isinstance(action, DeEscalate):
                assert action.previous == level and Level.NONE < action.level < level
            elif isinstance(action, Update):
                assert action.level == level
            else:
                assert isinstance(action, Resolve)
                open_episode = None
            level = action.level
        assert tracker.open_episode(KEY) == open_episode
