"""`serve --once` (a cron job, a CI step) must end when nothing can be done now, also
when the user paused syncing on this machine: it used to wait for the resume for ever."""

from __future__ import annotations

import random

from tests.integration.conftest import LOCAL_ID
from tests.reliability.helpers import STUDIO, publish


def test_once_ends_at_once_when_syncing_is_paused(sync_env):
    env = sync_env
    repre_id = publish(env, LOCAL_ID, "held", [1000], random.Random(2))
    first = env.engine()
    first.pause()
    first.start(once=True)
    assert first.wait_stopped(10), "serve --once hung while paused"
    assert first.state == "stopped"
    assert not env.store.get_representation("demo", repre_id).files[0].site(STUDIO).available

    second = env.engine()
    second.resume()
    second.start(once=True)
    assert second.wait_stopped(30)
    assert env.store.get_representation("demo", repre_id).files[0].site(STUDIO).available
